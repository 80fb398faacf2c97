"""The per-epoch training log (``log.jsonl``) and its chart (``progress.png``).

One JSON object per epoch (keys such as ``epoch``, ``train_loss``, ``val_loss``,
``pseudo_dice`` (per class), ``ema_pseudo_dice``, ``lr``, ``epoch_time``,
``data_wait_share``). The whole file is rewritten atomically each epoch, so after a resume
the log holds exactly the epochs of the checkpoint it resumed from.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from NNSegLib.util.atomic import atomic_path, write_text
from NNSegLib.util.errors import NNSegError

LOG_NAME = "log.jsonl"
PLOT_NAME = "progress.png"


class TrainingLog:
    """Epoch records of one run folder."""

    def __init__(self, run_dir: Path, records: list[dict[str, Any]] | None = None,
                 min_plot_interval_s: float = 30.0) -> None:
        self.run_dir = Path(run_dir)
        self.records: list[dict[str, Any]] = list(records or [])
        self.min_plot_interval_s = min_plot_interval_s
        self._last_plot = time.monotonic()

    @classmethod
    def load(cls, run_dir: Path, epochs: int | None = None) -> TrainingLog:
        """Read ``log.jsonl`` (keeping only epochs ``< epochs`` when given)."""
        path = Path(run_dir) / LOG_NAME
        records = []
        if path.is_file():
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise NNSegError(f"{path}:{n}: not JSON ({e})") from e
        if epochs is not None:
            records = [r for r in records if r.get("epoch", 0) < epochs]
        return cls(run_dir, records)

    def append(self, record: dict[str, Any]) -> None:
        """Add one epoch and rewrite the file."""
        self.records.append(record)
        self.save()

    def save(self) -> None:
        text = "".join(json.dumps(r, default=float) + "\n" for r in self.records)
        write_text(self.run_dir / LOG_NAME, text)

    def series(self, key: str) -> list[float | None]:
        return [r.get(key) for r in self.records]

    def maybe_plot(self, force: bool = False) -> bool:
        """:meth:`plot` unless the last plot (or the log's creation) is under
        ``min_plot_interval_s`` ago.

        A plot costs about a second of CPU; with epochs of minutes this is every epoch,
        with very short test epochs it keeps plotting from dominating.
        """
        now = time.monotonic()
        if not force and now - self._last_plot < self.min_plot_interval_s:
            return False
        self.plot()
        self._last_plot = time.monotonic()
        return True

    def plot(self) -> None:
        """Write ``progress.png``: losses, pseudo-Dice, learning rate, epoch time."""
        if not self.records:
            return
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure

        fig = Figure(figsize=(10, 9), dpi=80)
        axes = fig.subplots(3, 1, sharex=True)
        epochs = self.series("epoch")
        self._plot_losses(axes[0], epochs)
        axes[1].plot(epochs, self.series("lr"), color="tab:purple")
        axes[1].set_yscale("log")
        axes[1].set_ylabel("learning rate")
        axes[2].plot(epochs, self.series("epoch_time"), label="epoch time (s)")
        share = [(s or 0.0) * 100 for s in self.series("data_wait_share")]
        axes[2].plot(epochs, share, label="waiting for data (%)")
        axes[2].set_xlabel("epoch")
        axes[2].legend(loc="upper right")
        fig.subplots_adjust(left=0.1, right=0.92, top=0.97, bottom=0.06, hspace=0.12)
        with atomic_path(self.run_dir / PLOT_NAME, suffix=".png") as tmp:
            fig.savefig(tmp, format="png")

    def _plot_losses(self, ax: Any, epochs: list) -> None:
        ax.plot(epochs, self.series("train_loss"), label="train loss", color="tab:blue")
        val = self.series("val_loss")
        if any(v is not None for v in val):
            ax.plot(epochs, val, label="val loss", color="tab:red")
        ax.set_ylabel("loss")
        ax.legend(loc="upper left")
        dice_ax = ax.twinx()
        dice_ax.plot(epochs, self.series("mean_pseudo_dice"), ".", color="tab:green",
                     label="pseudo Dice")
        dice_ax.plot(epochs, self.series("ema_pseudo_dice"), color="tab:green",
                     label="pseudo Dice (EMA)")
        dice_ax.set_ylabel("pseudo Dice")
        dice_ax.set_ylim(0, 1)
        dice_ax.legend(loc="upper right")


__all__ = ["LOG_NAME", "PLOT_NAME", "TrainingLog"]
