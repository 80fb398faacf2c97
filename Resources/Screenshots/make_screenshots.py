"""Make the README's pictures from a real NNSeg result, headless (no Slicer application).

Usage, after ``nnseg demo OUT`` (the built-in synthetic sample data, a short training and
the segmentation of its held-out test cases in ``OUT/predictions``; the README's pictures
come from a longer run of the same: ``nnseg train … --continue --time-budget 50``, then
``nnseg predict`` into ``OUT/predictions``)::

    python Resources/Screenshots/make_screenshots.py OUT [--case sample_001]

Writes, next to this script:

* ``NNSeg_segmentation_3d.png`` — NNSeg's segmentation of one test case as a Slicer
  segmentation node (made with slicer-core: names, colours and closed surfaces from
  Slicer's own segmentation converter), rendered offscreen with VTK over an axial slice
  of the image;
* ``NNSeg_segmentation_slices.png`` — three axial slices of the same case: the image,
  NNSeg's segmentation (filled) and the reference label map (outlines), with matplotlib.

Needs ``slicer-core`` and an offscreen-capable VTK (EGL or OSMesa).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def load_case(demo: Path, case: str):
    from NNSegLib.data.io import SimpleITKIO

    test = demo / "Dataset901_SampleTest"
    io = SimpleITKIO()
    image, geometry = io.read(test / "imagesTr" / f"{case}_0000.nii.gz")
    reference, _ = io.read(test / "labelsTr" / f"{case}.nii.gz")
    prediction, _ = io.read(demo / "predictions" / f"{case}.nii.gz")
    labels = {int(v): k for k, v in json.loads((test / "dataset.json").read_text())[
        "labels"].items()}
    return image, reference.astype(np.int32), prediction.astype(np.int32), geometry, labels


def segmentation_surfaces(image, prediction, geometry, labels):
    """A slicer-core scene with the image and NNSeg's result; closed surfaces per segment."""
    from NNSegLib.slicer.scene import mrml

    scene = mrml.new_scene().scene
    volume = mrml.volume_node_from_array(scene, image, geometry, "sample")
    seg = mrml.segmentation_from_labels(scene, prediction, geometry, labels,
                                        reference_volume=volume,
                                        model_info={"name": "Dataset900_Sample"})
    seg.CreateClosedSurfaceRepresentation()
    segmentation = seg.GetSegmentation()
    surfaces = []
    for i in range(segmentation.GetNumberOfSegments()):
        sid = segmentation.GetNthSegmentID(i)
        poly = seg.GetClosedSurfaceInternalRepresentation(sid)
        if poly is not None and poly.GetNumberOfPoints():
            surfaces.append((segmentation.GetSegment(sid).GetName(),
                             segmentation.GetSegment(sid).GetColor(), poly))
    return volume, surfaces


def slice_actor(volume, k: int):
    """A textured plane showing axial slice ``k`` of the volume where it lies in RAS."""
    import slicer.util
    import vtk
    from vtk.util import numpy_support

    array = slicer.util.arrayFromVolume(volume)[k].astype(np.float32)
    lo, hi = np.percentile(array, (1, 99.5))
    grey = (np.clip((array - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)
    image = vtk.vtkImageData()
    image.SetDimensions(grey.shape[1], grey.shape[0], 1)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(grey.ravel(), deep=True))
    m = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(m)
    nj, ni = grey.shape

    def ras(i, j):
        return [sum(m.GetElement(r, c) * v for c, v in enumerate((i, j, k, 1))) for r in range(3)]

    plane = vtk.vtkPlaneSource()
    plane.SetOrigin(*ras(0, 0))
    plane.SetPoint1(*ras(ni - 1, 0))
    plane.SetPoint2(*ras(0, nj - 1))
    texture = vtk.vtkTexture()
    texture.SetInputData(image)
    texture.InterpolateOn()
    mapper = vtk.vtkPolyDataMapper()
    mapper.SetInputConnection(plane.GetOutputPort())
    actor = vtk.vtkActor()
    actor.SetMapper(mapper)
    actor.SetTexture(texture)
    actor.GetProperty().LightingOff()
    actor.GetProperty().SetOpacity(0.8)
    return actor


def render_3d(volume, surfaces, k: int, out: Path, size=(900, 640), elevation: float = 30.0,
              azimuth: float = -35.0, zoom: float = 1.5) -> None:
    import vtk

    renderer = vtk.vtkRenderer()
    renderer.SetBackground(0.12, 0.13, 0.16)
    renderer.SetBackground2(0.32, 0.34, 0.43)
    renderer.GradientBackgroundOn()
    renderer.AddActor(slice_actor(volume, k))
    for _name, colour, poly in surfaces:
        mapper = vtk.vtkPolyDataMapper()
        mapper.SetInputData(poly)
        mapper.ScalarVisibilityOff()
        actor = vtk.vtkActor()
        actor.SetMapper(mapper)
        actor.GetProperty().SetColor(*colour)
        actor.GetProperty().SetSpecular(0.3)
        actor.GetProperty().SetOpacity(0.55 if _name == "organ" else 1.0)
        renderer.AddActor(actor)
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(*size)
    window.SetMultiSamples(8)
    window.AddRenderer(renderer)
    renderer.ResetCamera()
    camera = renderer.GetActiveCamera()
    camera.Elevation(elevation)
    camera.Azimuth(azimuth)
    camera.OrthogonalizeViewUp()
    camera.Zoom(zoom)
    renderer.ResetCameraClippingRange()
    window.Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.Update()
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(out))
    writer.SetInputConnection(grab.GetOutputPort())
    writer.Write()


def best_slices(reference, prediction, labels, n: int = 3) -> list[int]:
    """Axial slices where each foreground label is largest (reference or prediction)."""
    picks: list[int] = []
    for v in sorted(v for v in labels if v):
        area = ((reference == v) | (prediction == v)).sum(axis=(1, 2))
        if area.max() > 0 and int(area.argmax()) not in picks:
            picks.append(int(area.argmax()))
    mid = reference.shape[0] // 2
    while len(picks) < n:
        picks.append(mid + len(picks))
    return sorted(picks[:n])


def slices_figure(image, reference, prediction, labels, colours, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    picks = best_slices(reference, prediction, labels)
    fig = Figure(figsize=(10.5, 3.9), dpi=100)
    axes = fig.subplots(1, 3)
    values = sorted(v for v in labels if v)
    cmap = ListedColormap([(0, 0, 0, 0)] + [(*colours[v], 0.45) for v in values])
    for ax, z in zip(axes, picks):
        lo, hi = np.percentile(image[z], (1, 99.5))
        ax.imshow(image[z], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.imshow(prediction[z], cmap=cmap, vmin=0, vmax=max(values), interpolation="nearest")
        for v in values:
            if (reference[z] == v).any():
                ax.contour(reference[z] == v, levels=[0.5], colors=[colours[v]], linewidths=1.2)
        ax.set_title(f"axial slice {z}", fontsize=10)
        ax.axis("off")
    handles = [matplotlib.patches.Patch(color=colours[v], label=labels[v]) for v in values]
    fig.legend(handles=handles, loc="lower center", ncol=len(values), frameon=False)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.92, bottom=0.1, wspace=0.03)
    fig.savefig(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path, help="the output folder of `nnseg demo`")
    parser.add_argument("--case", default="sample_001")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the pictures")
    args = parser.parse_args(argv)
    from NNSegLib.slicer.scene.terminology import distinct_colours

    image, reference, prediction, geometry, labels = load_case(args.demo, args.case)
    volume, surfaces = segmentation_surfaces(image, prediction, geometry, labels)
    # the image slice through the middle of the first structure (the organ), half see-through
    first = min(v for v in labels if v)
    k = int((prediction == first).sum(axis=(1, 2)).argmax())
    args.out.mkdir(parents=True, exist_ok=True)
    render_3d(volume, surfaces, k, args.out / "NNSeg_segmentation_3d.png")
    colours = distinct_colours({v: n for v, n in labels.items() if v})
    slices_figure(image, reference, prediction, labels, colours,
                  args.out / "NNSeg_segmentation_slices.png")
    print("wrote", args.out / "NNSeg_segmentation_3d.png",
          args.out / "NNSeg_segmentation_slices.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
