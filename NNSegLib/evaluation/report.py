"""A self-contained HTML report of an evaluation (``report.html``).

Contents: the class means table, a Dice box plot per class, the per-case Dice table and,
for the few worst cases (lowest mean Dice over classes), an overlay of one axial slice
(the median slice of the reference foreground): the image if an images folder is given,
reference contours solid and prediction contours dashed, one colour per class.

Figures are drawn with matplotlib's Agg backend, saved as PNG files in
``report_files/`` beside the HTML, and also embedded in the HTML (base64) so the report
stands alone when moved.
"""

from __future__ import annotations

import base64
import html
import math
from datetime import datetime
from pathlib import Path
from typing import Sequence

import numpy as np

from NNSegLib.data.io import SimpleITKIO, file_ending
from NNSegLib.evaluation.summary import Summary
from NNSegLib.util.atomic import write_bytes, write_text

_CSS = """body{font-family:sans-serif;margin:2em;max-width:70em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 8px;
text-align:right}th{background:#eee}td.l,th.l{text-align:left}tr.worst{background:#fde}
img{max-width:100%}figure{display:inline-block;margin:0 1em 1em 0}"""


def _figure_png(fig) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def dice_boxplot_png(summary: Summary) -> bytes:
    """PNG of one Dice box per class (NaN cases left out), with the cases as dots."""
    plt = _pyplot()
    names = {v: k for k, v in summary.labels.items()}
    data = [[d for d in vals if not math.isnan(d)] for vals in summary.dice_per_class().values()]
    labels = [names[k] for k in summary.means]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(labels) + 2), 4))
    ax.boxplot([d if d else [math.nan] for d in data], showmeans=True)
    ax.set_xticks(range(1, len(labels) + 1), labels)
    rng = np.random.default_rng(0)
    for i, d in enumerate(data, start=1):
        ax.plot(i + rng.uniform(-0.12, 0.12, len(d)), d, ".", color="0.3", alpha=0.5)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("Dice")
    ax.set_title(f"Dice per class ({len(summary.cases)} cases)")
    ax.grid(axis="y", alpha=0.3)
    png = _figure_png(fig)
    plt.close(fig)
    return png


def worst_cases(summary: Summary, n: int) -> list[str]:
    """Names of the ``n`` cases with the lowest mean Dice over classes (NaN skipped)."""
    scored = []
    for c in summary.cases:
        vals = [m.dice for m in c.metrics.values() if not math.isnan(m.dice)]
        if vals:
            scored.append((float(np.mean(vals)), c.case))
    return [name for _, name in sorted(scored)[:n]]


def median_slice(ref: np.ndarray, pred: np.ndarray) -> int:
    """Axis-0 index holding the median reference foreground voxel (prediction if empty)."""
    for mask in (ref > 0, pred > 0):
        counts = mask.sum(axis=tuple(range(1, mask.ndim)))
        total = int(counts.sum())
        if total:
            return int(np.searchsorted(np.cumsum(counts), (total + 1) // 2))
    return ref.shape[0] // 2


def overlay_png(case: str, reference: Path, prediction: Path, classes: dict[int, str],
                image_path: Path | None = None) -> bytes:
    """PNG of the median foreground slice: image, reference (solid), prediction (dashed)."""
    plt = _pyplot()
    reader = SimpleITKIO()
    ref, geo = reader.read(Path(reference))
    pred, _ = reader.read(Path(prediction))
    z = median_slice(ref, pred)
    sy, sx = geo.spacing[-2], geo.spacing[-1]
    fig, ax = plt.subplots(figsize=(5, 5 * ref.shape[1] * sy / max(ref.shape[2] * sx, 1e-6)))
    if image_path is not None and Path(image_path).is_file():
        image, _ = reader.read(Path(image_path))
        if image.shape == ref.shape:
            lo, hi = np.percentile(image[z], [0.5, 99.5])
            ax.imshow(image[z], cmap="gray", vmin=lo, vmax=hi, aspect=sy / sx,
                      interpolation="nearest")
    else:
        ax.imshow(np.zeros(ref.shape[1:]), cmap="gray", aspect=sy / sx)
    colours = plt.get_cmap("tab10")
    handles = []
    for i, (k, name) in enumerate(sorted(classes.items())):
        colour = colours(i % 10)
        for arr, style in ((ref, "solid"), (pred, "dashed")):
            sl = (arr[z] == k).astype(float)
            if sl.any():
                ax.contour(sl, levels=[0.5], colors=[colour], linestyles=style, linewidths=1.3)
        handles.append(plt.Line2D([], [], color=colour, label=name))
    handles += [plt.Line2D([], [], color="0.2", ls="solid", label="reference: solid"),
                plt.Line2D([], [], color="0.2", ls="dashed", label="prediction: dashed")]
    ax.legend(handles=handles, loc="upper right", fontsize=7, facecolor="0.85")
    ax.set_title(f"{case}, slice {z} (axis 0)", fontsize=9)
    ax.set_axis_off()
    png = _figure_png(fig)
    plt.close(fig)
    return png


def _img_tag(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _f(v: float, digits: int = 4) -> str:
    return "–" if isinstance(v, float) and math.isnan(v) else f"{v:.{digits}f}"


def _means_table(summary: Summary) -> str:
    names = {v: k for k, v in summary.labels.items()}
    rows = ["<tr><th class=l>class</th><th>label</th><th>Dice</th><th>IoU</th><th>HD95 mm</th>"
            "<th>ref mL</th><th>pred mL</th><th>cases</th><th>empty both</th>"
            "<th>ref empty</th><th>pred empty</th></tr>"]
    for k, m in summary.means.items():
        rows.append(
            f"<tr><td class=l>{html.escape(names[k])}</td><td>{k}</td><td>{_f(m['dice'])}</td>"
            f"<td>{_f(m['iou'])}</td><td>{_f(m['hd95_mm'], 2)}</td><td>{_f(m['ref_ml'], 3)}</td>"
            f"<td>{_f(m['pred_ml'], 3)}</td><td>{m['n_cases']}</td><td>{m['n_empty_both']}</td>"
            f"<td>{m['n_ref_empty']}</td><td>{m['n_pred_empty']}</td></tr>")
    fg = summary.foreground_mean
    rows.append(f"<tr><th class=l>foreground mean</th><td></td><th>{_f(fg['dice'])}</th>"
                f"<td>{_f(fg['iou'])}</td><td>{_f(fg['hd95_mm'], 2)}</td>"
                "<td></td><td></td><td></td><td></td><td></td><td></td></tr>")
    return "<table>" + "\n".join(rows) + "</table>"


def _cases_table(summary: Summary, worst: Sequence[str]) -> str:
    names = {v: k for k, v in summary.labels.items()}
    head = "".join(f"<th>Dice {html.escape(names[k])}</th>" for k in summary.means)
    rows = [f"<tr><th class=l>case</th>{head}</tr>"]
    for c in summary.cases:
        cls = " class=worst" if c.case in worst else ""
        cells = "".join(f"<td>{_f(c.metrics[k].dice)}</td>" for k in summary.means)
        rows.append(f"<tr{cls}><td class=l>{html.escape(c.case)}</td>{cells}</tr>")
    return "<table>" + "\n".join(rows) + "</table>"


def write_report(summary: Summary, path: Path | str, images_dir: Path | str | None = None,
                 n_worst: int = 3) -> Path:
    """Write ``report.html`` (and its PNGs in ``report_files/``); returns the HTML path.

    Args:
        summary: The evaluation.
        path: Where to write the HTML file.
        images_dir: Optional folder with ``<case>_0000<ending>`` images for the overlays.
        n_worst: How many of the worst cases to show as overlays.
    """
    from NNSegLib.evaluation.metrics import NAN_RULES

    path = Path(path)
    files = path.parent / "report_files"
    names = {v: k for k, v in summary.labels.items()}
    box = dice_boxplot_png(summary)
    write_bytes(files / "dice_boxplot.png", box)
    worst = worst_cases(summary, n_worst)
    by_name = {c.case: c for c in summary.cases}
    figures = []
    for name in worst:
        c = by_name[name]
        image = None
        if images_dir is not None:
            image = Path(images_dir) / f"{name}_0000{file_ending(c.reference)}"
        png = overlay_png(name, Path(c.reference), Path(c.prediction), names, image)
        write_bytes(files / f"overlay_{name}.png", png)
        figures.append(f"<figure>{_img_tag(png, name)}<figcaption>{html.escape(name)}"
                       "</figcaption></figure>")
    rules = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>"
                    for k, v in NAN_RULES.items())
    refs = sorted({str(Path(c.reference).parent) for c in summary.cases})
    preds = sorted({str(Path(c.prediction).parent) for c in summary.cases})
    body = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>NNSeg evaluation</title>
<style>{_CSS}</style></head><body>
<h1>NNSeg evaluation</h1>
<p>{len(summary.cases)} cases, written {datetime.now().isoformat(timespec="seconds")}.<br>
References: {html.escape(", ".join(refs))}<br>Predictions: {html.escape(", ".join(preds))}</p>
<h2>Means</h2>{_means_table(summary)}
<h2>Dice per class</h2>{_img_tag(box, "Dice box plot")}
<h2>Worst cases</h2>{"".join(figures) or "<p>none</p>"}
<h2>Per case</h2>{_cases_table(summary, worst)}
<h2>Rules for empty masks</h2><ul>{rules}</ul>
</body></html>
"""
    write_text(path, body)
    return path


__all__ = ["dice_boxplot_png", "median_slice", "overlay_png", "worst_cases", "write_report"]
