"""Which folds of a model the Segment and Batch panels would use, said before clicking.

``nnseg predict`` and ``nnseg segment-batch`` use finished folds only (METHOD §5): a fold still
training or stopped early is refused when asked for by name and left out of the default
folds, unless ``--allow-unfinished`` (then its best, else latest, checkpoint is used). A
model whose folds are *all* unfinished therefore segments nothing by default. The panels show
:func:`check_folds`'s text under the model and disable *Segment* (with the reason as its
tooltip) when the job would be refused; the "Use unfinished folds" check box passes
``--allow-unfinished``. No ``qt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from NNSegLib.util.i18n import tr
from NNSegLib.util.json_files import read_json
from NNSegLib.util.model_folder import ModelFolder


@dataclass(frozen=True)
class FoldCheck:
    """What the chosen folds of a model amount to.

    Attributes:
        problem: Why the job would be refused (``None`` when it would run).
        note: One line on the unfinished folds (left out, or used), else ``""``.
        unfinished_only: The model has checkpoints, but no finished fold.
    """

    problem: str | None = None
    note: str = ""
    unfinished_only: bool = False

    @property
    def text(self) -> str:
        """The line shown under the model: the problem, else the note."""
        return self.problem or self.note


def _short_status(run) -> str:
    """``"stopped before finishing (epoch 3/1000)"`` without the CLI hint."""
    status = run.status()
    return status.split("; resume")[0] + (")" if "; resume" in status else "")


def check_folds(model_path: Path | str, folds: str = "",
                allow_unfinished: bool = False) -> FoldCheck:
    """Check the folds an NNSeg model folder would be segmented with.

    Args:
        model_path: The Segment panel's model (folder; a ``.zip`` or an nnU-Net v2 results
            folder is not checked here).
        folds: The panel's folds (``"0-2"``; empty = every trained fold).
        allow_unfinished: "Use unfinished folds" is checked.
    """
    from NNSegLib.data.splits import parse_folds
    from NNSegLib.inference.model_loader import is_nnunet_model
    from NNSegLib.util.errors import NNSegError
    from NNSegLib.util.model_folder import ModelFolder

    path = Path(str(model_path))
    if not path.is_dir() or not (path / "plans.json").is_file() or is_nnunet_model(path):
        return FoldCheck()
    folder = ModelFolder(path)
    try:
        requested = [str(f) for f in parse_folds(folds)]
        configurations = folder.best_configurations() or [folder.default_configuration()]
    except (NNSegError, ValueError) as e:
        return FoldCheck(problem=str(e))
    problems, notes, only = [], [], False
    for configuration in configurations:
        runs = {r.fold: r for r in folder.runs(configuration) if r.checkpoint() is not None}
        finished = [f for f, r in runs.items() if r.is_finished]
        unfinished = {f: r for f, r in runs.items() if not r.is_finished}
        missing = [f for f in requested if f not in runs]
        if missing:
            problems.append(tr("{configuration} has no trained fold {folds} (trained: {have}).",
                               configuration=configuration, folds=", ".join(missing),
                               have=", ".join(runs) or tr("none")))
            continue
        chosen = {f: r for f, r in unfinished.items() if not requested or f in requested}
        states = "; ".join(tr("fold {fold} {status}", fold=f, status=_short_status(r))
                           for f, r in chosen.items())
        only = only or bool(unfinished and not finished)
        if not chosen:
            continue
        if allow_unfinished:
            notes.append(tr("{configuration}: {states} — used with its best checkpoint.",
                            configuration=configuration, states=states))
        elif requested or not finished:
            problems.append(tr(
                "{configuration} has {what}: {states}. Check \"Use unfinished folds\" to "
                "segment with the best checkpoint of each, or finish the training first.",
                configuration=configuration, states=states,
                what=tr("no finished fold") if not finished else tr("unfinished folds")))
        else:
            notes.append(tr("{configuration}: {states} — left out (check \"Use unfinished "
                            "folds\" to include it).", configuration=configuration,
                            states=states))
    return FoldCheck(" ".join(problems) or None, " ".join(notes), only)


def model_info(path: Path | str) -> dict:
    """Channels, labels and a one-line description of a model folder (or zip).

    Returns:
        For a folder with ``dataset.json``: ``channels`` (names in channel order),
        ``labels`` (``{value: name}``), ``name`` and ``description``; otherwise only a
        ``description`` (a zip is read when segmenting, anything else is no model).
    """
    path = Path(str(path))
    meta = ModelFolder(path).dataset_json
    if not meta.is_file():
        return {"description": tr("Zip package: imported when segmenting.")
                if path.suffix == ".zip" else tr("No model here (dataset.json missing).")}
    raw = read_json(meta, expect=dict)
    channels = [v for _, v in sorted(raw.get("channel_names", {"0": "image"}).items(),
                                     key=lambda kv: int(kv[0]))]
    labels = {int(v): k for k, v in raw.get("labels", {}).items()}
    names = ", ".join(n for v, n in sorted(labels.items()) if v)
    return {"channels": channels, "labels": labels, "name": raw.get("name", path.name),
            "description": f"{raw.get('name', path.name)}: channels {channels}; labels {names}"}


__all__ = ["FoldCheck", "check_folds", "model_info"]
