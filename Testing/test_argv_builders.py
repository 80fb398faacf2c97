"""The command modules' argv builders: what they build parses back with the real parser, and no
``nnseg`` flag is spelled outside the module that owns it."""

from __future__ import annotations

import argparse
import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _parse(argv: list[str]) -> argparse.Namespace:
    from NNSegLib.cli import _command_parser

    parser, _run = _command_parser(argv[0])
    return parser.parse_args(argv[1:])


def test_every_builder_parses_back_with_the_real_parser(tmp_path):
    from NNSegLib.data.check import check_argv
    from NNSegLib.evaluation.evaluate import evaluate_argv
    from NNSegLib.inference.model_package import import_model_argv
    from NNSegLib.inference.predict_options import predict_argv
    from NNSegLib.planning.fingerprint import fingerprint_argv
    from NNSegLib.planning.planner import plan_argv
    from NNSegLib.postprocessing.find_best import find_best_argv
    from NNSegLib.preprocessing.preprocess import preprocess_argv
    from NNSegLib.slicer.batch_job import segment_batch_argv
    from NNSegLib.training.model_versions import archive_model_argv
    from NNSegLib.training.train_cli import train_argv
    from NNSegLib.util.command_line import common_argv

    ds, work = tmp_path / "Dataset001_X", tmp_path / "work"
    a = _parse(check_argv(ds, 3))
    assert (a.dataset, a.workers) == (ds, 3)
    a = _parse(fingerprint_argv(ds, work, 4))
    assert (a.dataset, a.work, a.workers) == (ds, work, 4)
    a = _parse(plan_argv(ds, work, "v2", 11.5, ["2d", "3d_fullres"], ["2d.batch_size=3"]))
    assert (a.work, a.recipe, a.gpu_memory_gb, a.configurations, a.override) == (
        work, "v2", 11.5, ["2d", "3d_fullres"], ["2d.batch_size=3"])
    a = _parse(plan_argv(ds))
    assert (a.work, a.recipe, a.gpu_memory_gb, a.configurations) == (None, "paper", 8.0, None)
    a = _parse(preprocess_argv(ds, work, ["3d_fullres"], 2, overwrite=True))
    assert (a.configurations, a.workers, a.overwrite) == (["3d_fullres"], 2, True)
    a = _parse(find_best_argv(ds, work, ["2d"], [0, "3"], 5))
    assert (a.configurations, a.folds, a.workers) == (["2d"], [0, 3], 5)
    a = _parse(archive_model_argv(ds, work))
    assert (a.dataset, a.work) == (ds, work)
    a = _parse(import_model_argv(tmp_path / "m.zip", tmp_path / "imp"))
    assert (a.package, a.dest) == (tmp_path / "m.zip", tmp_path / "imp")
    a = _parse(evaluate_argv(ds / "labelsTr", tmp_path / "p", ds / "dataset.json", ds / "imagesTr",
                             tmp_path / "o", only_predicted=True))
    assert (a.ref_dir, a.pred_dir, a.labels, a.images, a.output, a.only_predicted) == (
        ds / "labelsTr", tmp_path / "p", ds / "dataset.json", ds / "imagesTr", tmp_path / "o",
        True)
    a = _parse(predict_argv([tmp_path / "i"], tmp_path / "o", tmp_path / "m", ["0", 2], "2d",
                            "cpu", tta=False, uncertainty=True, postprocessing=False,
                            allow_unfinished=True, precision="fp32", threads=3))
    assert (a.input, a.folds, a.configuration, a.device, a.no_tta, a.uncertainty,
            a.no_postprocessing, a.allow_unfinished, a.precision, a.threads, a.fast) == (
        [tmp_path / "i"], ["0", "2"], "2d", "cpu", True, True, True, True, "fp32", 3, False)
    assert _parse(predict_argv(["i"], "o", "m", fast=True)).fast
    a = _parse(segment_batch_argv([tmp_path / "a", tmp_path / "b"], tmp_path / "batch", "m",
                                  ["1"], "cpu", tta=False, overwrite=True, allow_unfinished=True))
    assert (a.input, a.output, a.folds, a.device, a.no_tta, a.overwrite, a.allow_unfinished) == (
        [tmp_path / "a", tmp_path / "b"], tmp_path / "batch", ["1"], "cpu", True, True, True)
    a = _parse([*train_argv(ds, "3d_fullres", 2, work, "cpu", 40, iterations_per_epoch=7,
                            val_iterations=0, seed=5, recipe="v2", num_threads=2,
                            final_validation=False, sets=["final_phase=true"],
                            time_budget=2.5),
                *common_argv(tmp_path / "ev.jsonl", tmp_path / "stop", quiet=True)])
    assert (a.configuration, a.fold, a.work, a.device, a.epochs, a.iterations_per_epoch,
            a.val_iterations, a.seed, a.recipe, a.num_threads, a.no_final_validation,
            a.time_budget, a.progress_json, a.stop_file, a.quiet) == (
        "3d_fullres", "2", work, "cpu", 40, 7, 0, 5, "v2", 2, True, 2.5,
        str(tmp_path / "ev.jsonl"), str(tmp_path / "stop"), True)
    assert a.set == [("final_phase", True)]
    a = _parse(train_argv(ds, "2d", 0, init_from=tmp_path / "v1", adapt_head=True))
    assert (a.init_from, a.init_from_adapt_head, a.continue_, a.epochs) == (
        tmp_path / "v1", True, False, None)
    assert _parse(train_argv(ds, "2d", 0, resume=True)).continue_
    assert _parse(train_argv(ds, "2d", 0, fresh=True)).fresh


def _flag_owners() -> dict[str, set[Path]]:
    """Every ``nnseg`` flag → the files of the command modules whose command has it."""
    from NNSegLib.cli import COMMANDS, _command_parser

    owners: dict[str, set[Path]] = {}
    for name, (module, _help) in COMMANDS.items():
        parser, _run = _command_parser(name)
        path = Path(importlib.import_module(module).__file__ or "").resolve()
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag not in ("--help",):
                    owners.setdefault(flag, set()).add(path)
    common = (ROOT / "NNSegLib" / "util" / "command_line.py").resolve()
    for flag in ("--progress-json", "--quiet", "--debug", "--stop-file"):
        owners[flag] = {common}
    return owners


#: Modules that are part of a command's machinery and name its option in their messages.
HELPERS = {"NNSegLib/training/budget.py": {"--time-budget"}}
#: Modules holding a command module's argv builders and shared options: they may spell
#: every flag of that command.
COMMAND_PARTS = {"NNSegLib/inference/predict_options.py": "NNSegLib/inference/predict.py"}


def _spelled_flags(path: Path, flags: set[str]) -> list[tuple[str, int]]:
    """Flags written as string literals outside ``add_argument(...)`` calls."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inside: set[int] = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add_argument"):
            inside |= {id(n) for n in ast.walk(node)}
    return [(n.value, n.lineno) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in flags
            and id(n) not in inside]


def test_no_flag_is_spelled_outside_its_command_module():
    owners = _flag_owners()
    files = [p for d in ("NNSegLib", "NNSeg", "bench") for p in (ROOT / d).rglob("*.py")]
    assert len(files) > 100
    strays = []
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        for flag, line in _spelled_flags(path, set(owners)):
            if path.resolve() in owners[flag] or flag in HELPERS.get(rel, set()):
                continue
            if rel in COMMAND_PARTS and (ROOT / COMMAND_PARTS[rel]).resolve() in owners[flag]:
                continue
            strays.append(f"{rel}:{line} spells {flag}")
    assert not strays, "use the owning module's *_argv builder:\n" + "\n".join(strays)


def test_the_stray_flag_check_finds_a_flag_in_a_list():
    tree_file = ROOT / "Testing" / "test_argv_builders.py"
    sample = tree_file.parent / "_stray_sample.py"
    sample.write_text('x = ["train", "d", "--epochs", "3"]\nparser.add_argument("--epochs")\n',
                      encoding="utf-8")
    try:
        assert _spelled_flags(sample, {"--epochs"}) == [("--epochs", 1)]
    finally:
        sample.unlink()
