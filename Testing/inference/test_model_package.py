from __future__ import annotations

import hashlib
import io
import json
import stat
import zipfile
from pathlib import Path

import pytest
import torch

from NNSegLib.cli import main
from NNSegLib.inference.model_package import export_model, import_model, verify_package
from NNSegLib.network.checkpoint import make_meta, save_checkpoint
from NNSegLib.planning.plans import ConfigurationPlan, Plans
from NNSegLib.util.errors import NNSegError

DATASET = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "a": 1},
           "numTraining": 2, "file_ending": ".nii.gz"}


CONFIG = ConfigurationPlan(
    name="3d_fullres", spatial_dims=3, data_identifier="3d_fullres", spacing=(1.0,) * 3,
    median_shape=(16, 16, 16), patch_size=(8, 8, 8), batch_size=2,
    strides=((1, 1, 1), (2, 2, 2)), kernel_sizes=((3, 3, 3),) * 2, features_per_stage=(4, 8))
PLANS = Plans(dataset_name="T", recipe="v2", memory_budget_gb=1.0, channel_names={"0": "MRI"},
              labels={"background": 0, "a": 1}, intensity_properties={},
              configurations={"3d_fullres": CONFIG})


def _network_weights(fold: int) -> dict:
    from NNSegLib.network.network import build_network

    torch.manual_seed(fold)
    return build_network(CONFIG, 1, 2).state_dict()


def _model_dir(root: Path) -> Path:
    """Fold 0 finished (checkpoint_final), fold 1 stopped early (checkpoint_best only)."""
    (root / "3d_fullres").mkdir(parents=True)
    PLANS.save(root / "plans.json")
    (root / "dataset.json").write_text(json.dumps(DATASET))
    (root / "best_configuration.json").write_text(json.dumps({"configuration": "3d_fullres"}))
    for fold in (0, 1):
        state = {"network": _network_weights(fold),
                 "meta": make_meta("3d_fullres", fold, 1, 2, epoch=5),
                 "optimizer": {"state": {}, "lr": 0.01}}
        name = "checkpoint_final.pt" if fold == 0 else "checkpoint_best.pt"
        save_checkpoint(root / "3d_fullres" / f"fold_{fold}" / name, state)
    return root


def test_export_import_round_trip(tmp_path: Path):
    model = _model_dir(tmp_path / "results")
    assert verify_package(export_model(model, tmp_path / "f.zip"))["configurations"] == {
        "3d_fullres": ["0"]}                              # the unfinished fold is left out
    with pytest.raises(NNSegError, match="fold 1 stopped before finishing"):
        export_model(model, tmp_path / "x.zip", folds=["1"])
    out = export_model(model, tmp_path / "m.zip", allow_unfinished=True)
    manifest = verify_package(out)
    assert manifest["configurations"] == {"3d_fullres": ["0", "1"]}
    with zipfile.ZipFile(out) as zf:
        names = sorted(zf.namelist())
        for name, entry in manifest["files"].items():
            assert hashlib.sha256(zf.read(name)).hexdigest() == entry["sha256"]
    assert names == sorted(["manifest.json", "plans.json", "dataset.json",
                            "best_configuration.json", "3d_fullres/fold_0/checkpoint_final.pt",
                            "3d_fullres/fold_1/checkpoint_final.pt"])
    dest = import_model(out, tmp_path / "imported")
    state = torch.load(dest / "3d_fullres/fold_1/checkpoint_final.pt", weights_only=True)
    assert set(state) == {"network", "meta"}            # optimizer dropped
    for key, value in _network_weights(1).items():
        assert torch.equal(state["network"][key], value), key
    assert state["meta"]["source_checkpoint"] == "checkpoint_best.pt"
    assert (dest / "plans.json").read_bytes() == (model / "plans.json").read_bytes()
    with pytest.raises(NNSegError, match="not empty"):
        import_model(out, dest)
    assert import_model(out, dest, overwrite=True) == dest


def test_export_selected_folds_and_errors(tmp_path: Path):
    model = _model_dir(tmp_path / "results")
    out = export_model(model, tmp_path / "one.zip", folds=["1"], allow_unfinished=True)
    assert verify_package(out)["configurations"] == {"3d_fullres": ["1"]}
    with pytest.raises(NNSegError, match="fold"):
        export_model(model, tmp_path / "x.zip", folds=["4"])
    with pytest.raises(NNSegError, match="missing"):
        export_model(tmp_path / "nothing", tmp_path / "x.zip")


def test_cli_export_and_import(tmp_path: Path):
    model = _model_dir(tmp_path / "results")
    assert main(["export-model", str(model), str(tmp_path / "c.zip"), "--folds", "0",
                 "--quiet"]) == 0
    assert main(["import-model", str(tmp_path / "c.zip"), "--dest", str(tmp_path / "d"),
                 "--quiet"]) == 0
    assert (tmp_path / "d" / "3d_fullres/fold_0/checkpoint_final.pt").is_file()
    assert main(["import-model", str(tmp_path / "nope.zip"), "--quiet"]) == 2


# --- refused archives, built by hand ----------------------------------------------------

def _weights() -> bytes:
    buffer = io.BytesIO()
    torch.save({"network": _network_weights(0), "meta": {"fold": "0"}}, buffer)
    return buffer.getvalue()


def _archive(path: Path, files: dict[str, bytes], manifest_files: dict[str, bytes] | None = None,
             symlink: str | None = None, corrupt: str | None = None) -> Path:
    listed = files if manifest_files is None else manifest_files
    manifest = {"format": "nnseg-model", "package_version": 1, "nnseg_version": "0",
                "files": {n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
                          for n, d in listed.items()}}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for name, data in files.items():
            zf.writestr(name, b"tampered" if name == corrupt else data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def _good_files() -> dict[str, bytes]:
    return {"plans.json": json.dumps(PLANS.to_dict()).encode(),
            "dataset.json": json.dumps(DATASET).encode(),
            "3d_fullres/fold_0/checkpoint_final.pt": _weights()}


def test_hand_built_good_archive_imports(tmp_path: Path):
    dest = import_model(_archive(tmp_path / "ok.zip", _good_files()), tmp_path / "ok")
    assert (dest / "3d_fullres/fold_0/checkpoint_final.pt").is_file()


class Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def _evil_weights() -> bytes:
    buffer = io.BytesIO()
    torch.save({"network": {"w": torch.zeros(2)}, "meta": Evil()}, buffer)
    return buffer.getvalue()


REFUSED = {
    "absolute path": (dict(extra={"/tmp/abs.json": b"x"}), "absolute"),
    "dotdot": (dict(extra={"../escape.json": b"x"}), "'..'"),
    "dotdot inside": (dict(extra={"3d_fullres/../../x.pt": b"x"}), "'..'"),
    "backslash": (dict(extra={"..\\win.json": b"x"}), "absolute or non-POSIX"),
    "symlink": (dict(symlink="3d_fullres/fold_1/checkpoint_final.pt"), "symlink"),
    "unexpected file in manifest": (dict(extra={"run.py": b"import os"}), "unexpected"),
    "file not in manifest": (dict(unlisted={"postprocessing.json": b"{}"}),
                             "not in the manifest"),
    "manifest lists a missing file": (dict(ghost={"best_configuration.json": b"{}"}),
                                      "missing file"),
    "checksum mismatch": (dict(corrupt="plans.json"), "checksum"),
    "pickled object": (dict(extra={"3d_fullres/fold_1/checkpoint_final.pt": _evil_weights()}),
                       "not a plain weights file"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_archives(tmp_path: Path, case: str, capsys):
    spec, message = REFUSED[case]
    files = _good_files()
    files.update(spec.get("extra", {}))
    manifest_files = dict(files)
    files.update(spec.get("unlisted", {}))
    manifest_files.update(spec.get("ghost", {}))
    path = _archive(tmp_path / "bad.zip", files, manifest_files, spec.get("symlink"),
                    spec.get("corrupt"))
    with pytest.raises(NNSegError, match=message):
        import_model(path, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    assert not list(tmp_path.glob(".dest*"))     # temporary folder cleaned up
    assert "unpickled!" not in capsys.readouterr().out


def test_refused_missing_manifest_and_non_zip(tmp_path: Path):
    path = tmp_path / "nomanifest.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("plans.json", "{}")
    with pytest.raises(NNSegError, match="no manifest.json"):
        import_model(path, tmp_path / "d")
    (tmp_path / "plain.zip").write_bytes(b"not a zip")
    with pytest.raises(NNSegError, match="not a zip"):
        import_model(tmp_path / "plain.zip", tmp_path / "d")
