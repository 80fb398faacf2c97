"""METHOD §8: start a training run from trained weights (``nnseg train --init-from``).

:func:`resolve_init_source` finds the checkpoint: a checkpoint file, a fold folder, or a
model folder (then the *same configuration and fold* as the run, final > best > latest
checkpoint: fold ``k``'s weights have never seen fold ``k``'s validation cases, so the
fine-tuned fold's validation stays honest; any other fold must be named as a file).

:func:`load_initial_weights` loads it (``weights_only``) into the new network, matching
tensors by name and shape, and never loads half silently:

* a different input channel count is refused (the first convolution cannot be reused);
* every tensor outside the segmentation heads must exist with the same shape in both, else
  the architecture differs (another plan) and the run is refused;
* a different label set (names and values from the ``dataset.json`` next to the
  checkpoint; without one, the class count) is refused unless ``adapt_head``
  (``--init-from-adapt-head``): the heads then start fresh, and the rows of labels both
  models have (by name, background always) are copied over. The report names what was
  loaded, adapted and new.

**Differs:** nnU-Net v2's ``load_pretrained_weights`` always drops the segmentation heads
(it transfers between datasets); NNSeg keeps them when the labels are the same, which is the
clinician's loop's case (the same task with more cases).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from NNSegLib.network import checkpoint as ckpt
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.json_files import read_json
from NNSegLib.util.model_folder import PLANS, ModelFolder, RunFolder

HEAD_PREFIX = "decoder.seg_layers."


@dataclass(frozen=True)
class InitSource:
    """Where a run's initial weights come from.

    Attributes:
        checkpoint: The checkpoint file.
        model_dir: The model folder it belongs to (``None`` for a lone file).
        labels: That model's ``{name: value}`` (``None`` when unknown).
    """

    checkpoint: Path
    model_dir: Path | None
    labels: dict[str, int] | None


@dataclass(frozen=True)
class InitReport:
    """What :func:`load_initial_weights` did."""

    checkpoint: Path
    loaded: int
    adapted: tuple[str, ...] = ()
    carried_labels: tuple[str, ...] = ()
    new_labels: tuple[str, ...] = ()
    labels_assumed: bool = False

    def describe(self) -> str:
        text = f"initial weights from {self.checkpoint}: {self.loaded} tensors loaded"
        if self.adapted:
            text += (f"; {len(self.adapted)} segmentation-head tensors adapted (labels kept: "
                     f"{', '.join(self.carried_labels) or 'none'}; new: "
                     f"{', '.join(self.new_labels) or 'none'})")
        if self.labels_assumed:
            text += ("; no dataset.json next to the checkpoint: its labels are assumed to be "
                     "this dataset's (same class count)")
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": str(self.checkpoint), "loaded": self.loaded,
                "adapted": list(self.adapted), "carried_labels": list(self.carried_labels),
                "new_labels": list(self.new_labels), "labels_assumed": self.labels_assumed}


def _model_dir_of(checkpoint: Path) -> Path | None:
    """``<model>/<config>/fold_<k>/<file>`` → ``<model>`` when it holds a plan."""
    parents = checkpoint.resolve().parents
    if len(parents) > 2 and parents[0].name.startswith("fold_") and \
            (parents[2] / PLANS).is_file():
        return parents[2]
    return None


def model_labels(model_dir: Path | None) -> dict[str, int] | None:
    """``{name: value}`` of a model folder's ``dataset.json`` (``None`` when absent)."""
    if model_dir is None or not ModelFolder(model_dir).dataset_json.is_file():
        return None
    raw = read_json(ModelFolder(model_dir).dataset_json, expect=dict)
    labels = raw.get("labels")
    if not isinstance(labels, dict):
        return None
    return {str(k): int(v) for k, v in labels.items() if isinstance(v, int)}


def resolve_init_source(source: Path | str, configuration: str, fold: int | str) -> InitSource:
    """The checkpoint ``--init-from`` names (see the module doc).

    Raises:
        NNSegError: when nothing is there, or the model folder lacks this fold.
    """
    path = Path(source)
    if path.is_file():
        checkpoint = path
    elif path.is_dir():
        if not (path / PLANS).is_file() and (path / "results" / PLANS).is_file():
            path = path / "results"   # a work folder: its model folder
        if path.name.startswith("fold_"):
            run = RunFolder(path)
        else:
            run = ModelFolder(path).run(configuration, fold)
        found = run.checkpoint()
        if found is None:
            trained = ModelFolder(path).trained_folds(configuration) \
                if not path.name.startswith("fold_") else []
            raise NNSegError(
                f"{run.path}: no checkpoint to start {configuration} fold {fold} from "
                f"(trained {configuration} folds there: {trained or 'none'}); fine-tune fold "
                f"{fold} from the same fold, or name a checkpoint file explicitly")
        checkpoint = found
    else:
        raise NNSegError(f"{path}: --init-from: no such checkpoint, fold or model folder")
    model_dir = _model_dir_of(checkpoint)
    return InitSource(checkpoint.resolve(), model_dir, model_labels(model_dir))


def _norm(labels: dict[str, int]) -> dict[str, int]:
    return {k.strip().lower(): int(v) for k, v in labels.items()}


def _check_body(weights: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                checkpoint: Path) -> list[str]:
    """Names of the tensors outside the heads; raises when the architectures differ."""
    body = [k for k in target if not k.startswith(HEAD_PREFIX)]
    missing = [k for k in body if k not in weights]
    unexpected = [k for k in weights if not k.startswith(HEAD_PREFIX) and k not in target]
    shapes = [f"{k} {tuple(weights[k].shape)} vs {tuple(target[k].shape)}" for k in body
              if k in weights and tuple(weights[k].shape) != tuple(target[k].shape)]
    if missing or unexpected or shapes:
        details = "; ".join(filter(None, [
            f"missing {missing[:3]}" if missing else "",
            f"unexpected {unexpected[:3]}" if unexpected else "",
            f"different shapes {shapes[:3]}" if shapes else ""]))
        raise NNSegError(f"{checkpoint}: its network does not match this plan's ({details}); "
                         "it was trained with another plan or configuration: fine-tune with "
                         "the plans.json of the model you start from, or train from scratch")
    return body


def _adapt_heads(weights: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                 old: dict[str, int], new: dict[str, int]) -> tuple[list[str], list[str]]:
    """Fresh heads with the rows of shared labels copied; returns (head keys, kept labels)."""
    pairs = {name: (old[name], value) for name, value in new.items() if name in old}
    pairs.setdefault("background", (0, 0))
    heads = [k for k in target if k.startswith(HEAD_PREFIX)]
    for key in heads:
        fresh = target[key].clone()
        source = weights.get(key)
        if source is not None and tuple(source.shape[1:]) == tuple(fresh.shape[1:]):
            for old_value, new_value in pairs.values():
                if old_value < source.shape[0] and new_value < fresh.shape[0]:
                    fresh[new_value] = source[old_value].to(fresh.dtype)
        weights[key] = fresh
    kept = sorted(n for n, (_o, v) in pairs.items() if v != 0)
    return heads, kept


def load_initial_weights(network: torch.nn.Module, source: InitSource, labels: dict[str, int],
                         num_input_channels: int, adapt_head: bool = False) -> InitReport:
    """Load ``source`` into ``network`` (see the module doc).

    Args:
        network: The new run's plain network (not DDP-wrapped or compiled).
        source: From :func:`resolve_init_source`.
        labels: This dataset's ``{name: value}``.
        num_input_channels: The run's network input channels.
        adapt_head: Start new heads when the label sets differ.

    Raises:
        NNSegError: a different channel count, another architecture, or a different label
            set without ``adapt_head``.
    """
    state = ckpt.load_checkpoint(source.checkpoint)
    meta, weights = state["meta"], dict(state["network"])
    channels = int(meta.get("num_input_channels", -1))
    if channels != num_input_channels:
        raise NNSegError(f"{source.checkpoint}: trained on {channels} input channel(s), this run "
                         f"has {num_input_channels}; the input layer cannot be reused "
                         "(no --init-from option changes that): train from scratch")
    new = _norm(labels)
    old = _norm(source.labels) if source.labels is not None else None
    classes = int(meta.get("num_classes", -1))
    same = old == new if old is not None else classes == max(new.values()) + 1
    target = network.state_dict()
    body = _check_body(weights, target, source.checkpoint)
    if same:
        network.load_state_dict(weights)
        return InitReport(source.checkpoint, len(target), labels_assumed=old is None)
    if not adapt_head:
        described = (f"labels {source.labels}" if source.labels is not None
                     else f"{classes} classes")
        raise NNSegError(f"{source.checkpoint}: trained for {described}, this dataset has "
                         f"labels {labels}; pass --init-from-adapt-head to start new "
                         "segmentation heads (the rest of the network is loaded), or train "
                         "from scratch")
    heads, kept = _adapt_heads(weights, target, old or {}, new)
    network.load_state_dict({k: weights[k] for k in target})
    new_names = sorted(n for n in new if n not in (old or {}) and n != "background")
    return InitReport(source.checkpoint, len(body), tuple(heads), tuple(kept),
                      tuple(new_names))


__all__ = ["HEAD_PREFIX", "InitReport", "InitSource", "load_initial_weights", "model_labels",
           "resolve_init_source"]
