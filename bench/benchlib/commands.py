"""Command lines of the two tools (NNSeg's built by NNSegLib's own argv builders) and the input
folder of held-out cases they segment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from .env import NNSEG_BIN, TRAINER_NAME, dataset_id, nnunet_bin


def nnunet_train_cmd(dataset: Path, config: str = "3d_fullres", fold: str = "0") -> list[str]:
    """``nnUNetv2_train`` on the CPU with our short bench trainer."""
    return [
        nnunet_bin("nnUNetv2_train"),
        str(dataset_id(dataset)),
        config,
        fold,
        "-device",
        "cpu",
        "-tr",
        TRAINER_NAME,
    ]


def nnseg_prepare_steps(
    dataset: Path,
    work: Path,
    workers: int,
    recipe: str | None = None,
    configurations: Sequence[str] = (),
    overrides: Sequence[str] = (),
    preprocess_configurations: Sequence[str] = (),
    nnseg_bin: Path | None = None,
) -> list[tuple[str, list[str]]]:
    """``nnseg fingerprint``, ``plan`` and ``preprocess`` command lines (name, argv)."""
    from NNSegLib.planning.fingerprint import fingerprint_argv
    from NNSegLib.planning.planner import plan_argv
    from NNSegLib.preprocessing.preprocess import preprocess_argv
    from NNSegLib.util.command_line import common_argv

    nn = str(nnseg_bin or NNSEG_BIN)
    quiet = common_argv(quiet=True)
    return [
        ("fingerprint", [nn, *fingerprint_argv(dataset, work, workers), *quiet]),
        ("plan", [nn, *plan_argv(dataset, work, recipe, None, configurations, overrides),
                  *quiet]),
        ("preprocess", [nn, *preprocess_argv(dataset, work, preprocess_configurations, workers),
                        *quiet]),
    ]


def nnseg_train_cmd(
    dataset: Path,
    work: Path,
    *,
    epochs: int,
    iterations: int,
    seed: int,
    extra: Sequence[str] = (),
    nnseg_bin: Path | None = None,
    config: str = "3d_fullres",
    fold: str = "0",
) -> list[str]:
    """``nnseg train`` of one fold on the CPU, fresh, one validation batch per epoch, no final
    validation."""
    from NNSegLib.training.train_cli import train_argv
    from NNSegLib.util.command_line import common_argv

    return [
        str(nnseg_bin or NNSEG_BIN),
        *train_argv(dataset, config, fold, work, "cpu", epochs, iterations_per_epoch=iterations,
                    val_iterations=1, seed=seed, fresh=True, final_validation=False),
        *common_argv(quiet=True),
        *extra,
    ]


def nnseg_predict_cmd(
    inp: Path,
    out: Path,
    model: Path,
    *,
    extra: Sequence[str] = (),
    nnseg_bin: Path | None = None,
    config: str = "3d_fullres",
    fold: str = "0",
) -> list[str]:
    """``nnseg predict`` with one fold's model on the CPU (mirror TTA is its default)."""
    from NNSegLib.inference.predict_options import predict_argv
    from NNSegLib.util.command_line import common_argv

    return [
        str(nnseg_bin or NNSEG_BIN),
        *predict_argv([inp], out, model, [fold], configuration=config, device="cpu"),
        *common_argv(quiet=True),
        *extra,
    ]


def nnunet_predict_cmd(
    inp: Path, out: Path, dataset: Path, config: str = "3d_fullres", fold: str = "0"
) -> list[str]:
    """``nnUNetv2_predict`` with our bench trainer's final checkpoint, CPU, one process each
    for pre- and post-processing (mirror TTA is its default)."""
    return [
        nnunet_bin("nnUNetv2_predict"),
        "-i",
        str(inp),
        "-o",
        str(out),
        "-d",
        str(dataset_id(dataset)),
        "-c",
        config,
        "-f",
        fold,
        "-tr",
        TRAINER_NAME,
        "-chk",
        "checkpoint_final.pth",
        "-device",
        "cpu",
        "-npp",
        "1",
        "-nps",
        "1",
    ]


def link_cases(dataset: Path, cases: Sequence[str], inp: Path) -> Path:
    """An input folder of symlinks to the images (all channels) of the given training cases."""
    dsj = json.loads((dataset / "dataset.json").read_text())
    ending = dsj.get("file_ending", ".nii.gz")
    inp.mkdir(parents=True, exist_ok=True)
    for c in cases:
        for ch in range(len(dsj["channel_names"])):
            name = f"{c}_{ch:04d}{ending}"
            link = inp / name
            if not link.exists():
                link.symlink_to((dataset / "imagesTr" / name).resolve())
    return inp

