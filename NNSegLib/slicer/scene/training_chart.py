"""The training curves in the scene: a table node and a plot chart node (loss and Dice).

It creates nodes through the scene argument and fills the table with ``vtk`` arrays, so it
needs no ``import slicer`` (only :mod:`.mrml` may import it). The records
are the ``epoch`` events of ``nnseg train`` or the lines of its ``log.jsonl``
(:func:`NNSegLib.slicer.training_runs.chart_records`).
"""

from __future__ import annotations

from typing import Any, Sequence

#: Epoch-record keys plotted by :func:`training_chart` → series titles.
CHART_SERIES = {
    "train_loss": "train loss",
    "val_loss": "validation loss",
    "mean_pseudo_dice": "pseudo Dice",
    "ema_pseudo_dice": "pseudo Dice (EMA)",
}


def training_chart(scene: Any, records: Sequence[dict], chart: Any = None,
                   name: str = "NNSeg training") -> Any:
    """Fill a table node and a plot chart node with per-epoch loss and Dice curves.

    Args:
        scene: The MRML scene.
        records: ``epoch`` events (or ``log.jsonl`` records) in any order; one row per
            epoch (a later record for the same epoch replaces the earlier one).
        chart: A chart made by an earlier call (its table and series are reused).
        name: Base name of new nodes.

    Returns:
        The ``vtkMRMLPlotChartNode`` (its table: ``chart.GetAttribute("NNSeg.Table")``).
    """
    import vtk

    rows = {int(r["epoch"]): r for r in records if "epoch" in r}
    epochs = sorted(rows)
    if chart is not None and not scene.IsNodePresent(chart):
        chart = None  # deleted by the user, or left from a closed scene
    if chart is None:
        chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
        chart.SetTitle("Training")
        chart.SetXAxisTitle("epoch")
        chart.SetYAxisTitle("loss / Dice")
    table_id = chart.GetAttribute("NNSeg.Table")
    table = scene.GetNodeByID(table_id) if table_id else None
    if table is None:
        table = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{name} table")
        chart.SetAttribute("NNSeg.Table", table.GetID())
    vtk_table = table.GetTable()
    vtk_table.Initialize()
    columns = {"epoch": vtk.vtkDoubleArray()}
    columns.update({k: vtk.vtkDoubleArray() for k in CHART_SERIES})
    for key, array in columns.items():
        array.SetName(key)
        for e in epochs:
            value = e if key == "epoch" else rows[e].get(key)
            array.InsertNextValue(float("nan") if value is None else float(value))
        vtk_table.AddColumn(array)
    table.Modified()
    for key, title in CHART_SERIES.items():
        series_id = chart.GetAttribute(f"NNSeg.Series.{key}")
        series = scene.GetNodeByID(series_id) if series_id else None
        if series is None:
            series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", title)
            series.SetAndObserveTableNodeID(table.GetID())
            series.SetXColumnName("epoch")
            series.SetYColumnName(key)
            series.SetPlotType(series.PlotTypeScatter)
            series.SetMarkerStyle(series.MarkerStyleNone)
            series.SetUniqueColor()
            chart.AddAndObservePlotSeriesNodeID(series.GetID())
            chart.SetAttribute(f"NNSeg.Series.{key}", series.GetID())
    return chart


__all__ = ["CHART_SERIES", "training_chart"]
