"""Every MRML / VTK-Slicer call of NNSegLib and the module exists in Slicer 5.10.0 and 5.12.3.

The tests run ``slicer-core`` 5.13 from PyPI, newer than any release. The API of the
supported releases, read from their headers, is in ``mrml_api/`` (see its README). Two
independent ways find the calls:

* statically (:mod:`mrml_call_scan`): every ``x.Name(...)``, ``slicer.vtkX.Name``, enum
  constant and class name written in ``NNSeg/NNSeg.py`` and ``NNSegLib/``;
* at run time (:mod:`mrml_trace`): the MRML tests of ``Testing/slicer`` run under a profile
  hook that records the real class of each object a method is called on, and the line of
  NNSegLib / NNSeg.py that called it; the number of arguments comes from that line's syntax.

Each must agree with the other (every traced call is one the scan found) and with both
releases. The checker is shown to fail on a real method of slicer-core that 5.10.0 lacks.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer", reason="needs slicer-core (real MRML classes)")

import mrml_api_check as api  # noqa: E402
import mrml_call_scan as scan  # noqa: E402
from mrml_trace import Tracer  # noqa: E402

pytestmark = pytest.mark.slicer

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SOURCES = [REPO / "NNSeg" / "NNSeg.py", *sorted((REPO / "NNSeg" / "NNSegPanels").glob("*.py")),
           *sorted((REPO / "NNSegLib").rglob("*.py"))]

#: Calls whose name a Slicer class also has, made on objects that are not Slicer's.
NOT_MRML = {
    ("NNSegLib/data/io.py", "GetDimension"): "SimpleITK.Image",
    ("NNSegLib/postprocessing/connected_components.py", "Execute"):
        "SimpleITK.ConnectedComponentImageFilter / LabelShapeStatisticsImageFilter",
    ("NNSegLib/postprocessing/connected_components.py", "GetLabels"):
        "SimpleITK.LabelShapeStatisticsImageFilter",
}

#: The MRML tests run under the tracer in the default run: together they call every
#: (class, method) pair that the full set of MRML tests calls (``test_traced_calls_full``).
TRACED_TESTS = ["Testing/slicer/scene/test_mrml.py", "Testing/slicer/scene/test_case_list.py",
                "Testing/slicer/scene/test_dataset.py", "Testing/slicer/test_segment_run.py",
                "Testing/slicer/test_segment_sequence.py", "Testing/slicer/test_review_panel.py"]
#: Every test file that drives NNSegLib / NNSeg.py with real MRML.
ALL_MRML_TESTS = TRACED_TESTS + [
    "Testing/extension/test_loop_walk.py", "Testing/slicer/scene/test_review.py",
    "Testing/slicer/test_batch_job.py", "Testing/slicer/scene/test_prediction.py",
    "Testing/slicer/test_module_logic.py", "Testing/extension/test_module_widget.py"]


# ----------------------------------------------------------------------------------------
# The facts
# ----------------------------------------------------------------------------------------
def test_facts_come_from_the_release_commits():
    for release in (*api.RELEASES, api.OLDER_RELEASE):
        facts = api.load(release)
        assert facts.commit == api.COMMITS[release]
        assert facts.release == release
        assert len(facts.headers) > 300 and len(facts.classes) > 300
        assert "Libs/MRML/Core/vtkMRMLScene.h" in facts.headers
        assert facts.chain("vtkMRMLLabelMapVolumeNode") == [
            "vtkMRMLLabelMapVolumeNode", "vtkMRMLScalarVolumeNode", "vtkMRMLVolumeNode",
            "vtkMRMLDisplayableNode", "vtkMRMLTransformableNode", "vtkMRMLStorableNode",
            "vtkMRMLNode", "vtkObject"]
        assert facts.chain("vtkOrientedImageData") == ["vtkOrientedImageData", "vtkImageData"]
        scene = facts.classes["vtkMRMLScene"]
        assert api.parse_arities(scene["methods"]["AddNewNodeByClass"]) == [(1, 2)]
        assert {"StartCloseEvent", "EndCloseEvent", "NodeAddedEvent"} <= set(scene["constants"])


def test_facts_agree_with_slicer_core():
    """The header reader misses nothing slicer-core shows: of the methods and constants that
    slicer-core's classes define themselves, those absent from 5.12.3's headers are few, and
    each one checked is really absent (new after 5.12.3)."""
    facts = api.load("5.12.3")
    total = absent = 0
    for name, cls in api.slicer_core_classes().items():
        if name not in facts.classes:
            continue
        known = set(facts.classes[name]["methods"]) | set(facts.classes[name]["constants"])
        own = {a for a in vars(cls) if a[:1].isupper()}
        total += len(own)
        absent += len({a for a in own if api.python_name(a) not in known})
    assert total > 8000
    assert absent / total < 0.01, (absent, total)   # 62 of 10476 when written
    # spot checks, read in the headers: added after 5.12.3 / after 5.10.0
    assert "GetInteractionHandleOpacity" in vars(slicer.vtkMRMLMarkupsDisplayNode)
    assert facts.find("vtkMRMLMarkupsDisplayNode", "GetInteractionHandleOpacity") is None
    assert api.load("5.10.0").find("vtkMRMLVolumeNode", "GetTransformedImageData") is None
    assert facts.find("vtkMRMLVolumeNode", "GetTransformedImageData").owner == "vtkMRMLVolumeNode"


def test_header_reader_on_macros_access_and_wrap_guards():
    sys.path.insert(0, str(HERE / "tools"))
    try:
        from cpp_header_facts import ParseError, parse_header
    finally:
        sys.path.remove(str(HERE / "tools"))
    header = """
    #include "vtkObject.h"
    class VTK_X_EXPORT vtkDemo : public vtkObject
    {
      int hidden();
    public:
      static vtkDemo* New();
      vtkTypeMacro(vtkDemo, vtkObject);
      enum Kinds { KindA = 0, KindB /* last */ };
      enum { VTK_DEMO_TRACE = 1 << 2, Old VTK_DEPRECATED_IN_9_3_0("use KindA") };
      vtkGetMacro(Level, int);
      vtkSetClampMacro(Level, int, 0, 9);
      vtkBooleanMacro(Visible, bool);
      vtkGetVector3Macro(Origin, double);
      vtkSetStringMacro(Label);
      void Draw(int a, double b = 1.0, const char* c = "x,y");
      void Draw();
      VTK_DEPRECATED_IN_9_3_0("no") int Old(std::vector<std::pair<int, int>> v) { return 0; }
      VTK_WRAPEXCLUDE void NotWrapped();
      struct Inner { void InnerMethod(); };
    #ifndef __VTK_WRAP__
      void CppOnly();
    #else
      void WrapOnly();
    #endif
      vtkDemo(const vtkDemo&) = delete;
    protected:
      vtkDemo() : Level(0) { }
      void Hidden2();
      int Level;
    };
    """
    (demo,) = parse_header(header, "vtkDemo.h")
    facts = demo.to_json()
    assert facts["superclass"] == "vtkObject"
    assert facts["constants"] == ["KindA", "KindB", "Kinds", "Old", "VTK_DEMO_TRACE"]
    assert {k: api.parse_arities(v) for k, v in facts["methods"].items()} == {
        "Draw": [(0, 0), (1, 3)], "GetLevel": [(0, 0)], "SetLevel": [(1, 1)],
        "GetLevelMinValue": [(0, 0)], "GetLevelMaxValue": [(0, 0)],
        "VisibleOn": [(0, 0)], "VisibleOff": [(0, 0)], "GetOrigin": [(0, 0), (1, 1), (3, 3)],
        "SetLabel": [(1, 1)], "Old": [(1, 1)], "WrapOnly": [(0, 0)],
        "IsA": [(1, 1)], "IsTypeOf": [(1, 1)], "SafeDownCast": [(1, 1)], "NewInstance": [(0, 0)],
        "GetNumberOfGenerationsFromBase": [(1, 1)],
        "GetNumberOfGenerationsFromBaseType": [(1, 1)]}
    with pytest.raises(ParseError, match="unknown macro vtkSetNewThingMacro"):
        parse_header("class vtkBad : public vtkObject {\npublic:\n"
                     "  vtkSetNewThingMacro(X, int);\n};", "vtkBad.h")


# ----------------------------------------------------------------------------------------
# The checker fails where it must
# ----------------------------------------------------------------------------------------
def test_checker_flags_a_slicer_core_method_missing_from_5_10():
    """vtkMRMLAbstractViewNode::GetMarkupsOcclusionEnabled came in 5.12: slicer-core has it,
    5.10.0's headers do not."""
    view = slicer.vtkMRMLViewNode()
    assert view.GetMarkupsOcclusionEnabled() in (True, False)
    problems = api.check_pair("vtkMRMLViewNode", "GetMarkupsOcclusionEnabled")
    assert problems == ["Slicer 5.10.0: vtkMRMLViewNode has no GetMarkupsOcclusionEnabled "
                        "(chain vtkMRMLViewNode > vtkMRMLAbstractViewNode > vtkMRMLNode > "
                        "vtkObject)"]

    with Tracer() as tracer:   # the run-time check sees the call on the real class
        view.GetMarkupsOcclusionEnabled()
        view.GetName()
    assert set(tracer.pairs) == {("vtkMRMLViewNode", "GetMarkupsOcclusionEnabled"),
                                 ("vtkMRMLViewNode", "GetName")}
    assert api.check_pair("vtkMRMLViewNode", "GetName") == []

    source = "\n".join([
        "import slicer",
        "def f(volume, scene, interaction, seg, view):",
        "    view.GetMarkupsOcclusionEnabled()",                       # 5.12 only
        "    volume.SetShowInAllViewsByDefault(1)",                    # after 5.12.3
        "    scene.AddNewNodeByClass('vtkMRMLNoSuchNode')",            # no such class
        "    interaction.Scroll",                                      # constant after 5.12.3
        "    slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode("
        "1, 2, 3, 4, 5, 6, 7)",                                        # 7 arguments
        "    seg.GetSegmentation().GetNthSegment(0).GetName()",        # fine
        "    volume.GetTransformedImageData()",                        # 5.12: static, 4 args
    ])
    found = {(u.line, u.name): scan.problems(u) for u in scan.scan_source(source)}
    assert [p[:28] for p in found[(3, "GetMarkupsOcclusionEnabled")]] == [
        "Slicer 5.10.0: none of the s"]
    assert len(found[(4, "SetShowInAllViewsByDefault")]) == 2
    assert found[(5, "vtkMRMLNoSuchNode")] == ["Slicer 5.10.0: no class vtkMRMLNoSuchNode",
                                               "Slicer 5.12.3: no class vtkMRMLNoSuchNode"]
    assert len(found[(6, "Scroll")]) == 2
    assert "takes 3..6 arguments, called with 7" in found[(7, "ExportSegmentsToLabelmapNode")][0]
    assert not any(found[(8, n)] for n in ("GetSegmentation", "GetNthSegment", "GetName"))
    assert [p[:14] for p in found[(9, "GetTransformedImageData")]] == [
        "Slicer 5.10.0:", "Slicer 5.12.3:"]   # missing / takes 4 arguments


# ----------------------------------------------------------------------------------------
# NNSegLib and the module
# ----------------------------------------------------------------------------------------
def _uses() -> list[scan.Use]:
    return scan.scan_files(SOURCES, REPO)


def test_static_calls_exist_in_supported_releases():
    uses = _uses()
    kinds = {k: sum(u.kind == k for u in uses) for k in ("call", "qualified", "constant", "class")}
    assert kinds["call"] > 200 and kinds["class"] > 20 and kinds["qualified"] >= 3, kinds
    excluded = {(u.path, u.name) for u in uses} & set(NOT_MRML)
    assert excluded == set(NOT_MRML), "stale NOT_MRML entries"
    problems = [f"{u.where()} {u.cls + '.' if u.cls else ''}{u.name}: {p}"
                for u in uses if (u.path, u.name) not in NOT_MRML and u.kind != "util"
                for p in scan.problems(u)]
    assert not problems, "\n".join(problems)


def test_slicer_util_functions_exist_in_supported_releases():
    """``slicer.util`` is Slicer's own Python: checked against each release's ``util.py``
    (in ``../shared/slicer/python/<version>/``), names and keyword arguments."""
    shared = REPO.parent / "shared" / "slicer" / "python"
    if not shared.is_dir():
        pytest.skip("needs ../shared/slicer/python (Slicer's Python layer of each release)")
    uses = [u for u in _uses() if u.kind == "util"]
    assert {"arrayFromVolume", "tryWithErrorDisplay", "setSliceViewerLayers",
            "VTKObservationMixin"} <= {u.name for u in uses}
    problems = []
    for release in api.RELEASES:
        text = (shared / release / "slicer" / "util.py").read_text(encoding="utf-8")
        problems += [f"{u.where()} {p}" for u in uses
                     for p in scan.util_problems(u, text, release)]
    assert not problems, "\n".join(problems)
    # and the check fails where it must: an argument and a function no release has
    text = (shared / "5.10.0" / "slicer" / "util.py").read_text(encoding="utf-8")
    (bad_kw, bad_name) = scan.scan_source(
        "import slicer\nslicer.util.setSliceViewerLayers(foregroundAlpha=0.4)\n"
        "slicer.util.noSuchHelper()\n")
    assert scan.util_problems(bad_kw, text, "5.10.0") == [
        "Slicer 5.10.0: slicer.util.setSliceViewerLayers has no argument foregroundAlpha"]
    assert scan.util_problems(bad_name, text, "5.10.0") == [
        "Slicer 5.10.0: slicer.util has no noSuchHelper"]


def test_slicer_5_8_lacks_two_calls_so_the_minimum_is_5_10():
    """The same check against Slicer 5.8.1 finds the two calls that need 5.10: a real
    failure on NNSegLib's own code. When they are gone, the minimum can be lowered."""
    older = [api.load(api.OLDER_RELEASE)]
    found = {(u.path, u.name, p) for u in _uses()
             if u.kind != "util" and (u.path, u.name) not in NOT_MRML
             for p in scan.problems(u, older)}
    assert found == {
        ("NNSegLib/slicer/scene/mrml.py", "SetColorDefined",
         "Slicer 5.8.1: none of the slicer-core classes defining SetColorDefined "
         "(vtkMRMLColorNode) has it with 2 argument(s)"),
        ("NNSegLib/slicer/scene/mrml.py", "SetTerminology",
         "Slicer 5.8.1: none of the slicer-core classes defining SetTerminology "
         "(vtkMRMLColorNode, vtkSegment) has it with 1 argument(s)")}, found


def _trace(tmp_path: Path, tests: list[str]) -> dict:
    out = tmp_path / "trace.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(HERE), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "mrml_trace", f"--mrml-trace={out}",
         "-p", "no:cacheprovider", *tests], cwd=REPO, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    passed = int(re.search(r"(\d+) passed", run.stdout).group(1))  # type: ignore[union-attr]
    trace = json.loads(out.read_text())
    assert trace["tests"] == passed > 0
    return trace


def _check_trace(trace: dict) -> list[str]:
    """Problems of the traced calls; also fails when the scan missed a traced call."""
    at = {}
    for u in _uses():
        if u.kind in ("call", "qualified"):
            at.setdefault((u.path, u.line, u.name), []).append(u)
    problems, unseen = [], []
    for path, line, cls, method in trace["sites"]:
        uses = at.get((path, line, method))
        if uses is None and method in api.core_owners():
            unseen.append(f"{path}:{line} {cls}.{method}")
        for nargs in {u.nargs for u in uses or []} or {None}:
            problems += [f"{path}:{line} {cls}.{method}: {p}"
                         for p in api.check_pair(cls, method, nargs)]
    assert not unseen, "traced but not found by the scan:\n" + "\n".join(unseen)
    return problems


def test_traced_calls_exist_in_supported_releases(tmp_path):
    trace = _trace(tmp_path, TRACED_TESTS)
    assert len(trace["pairs"]) > 100 and len(trace["sites"]) > 200
    classes = {c for _, _, c, _ in trace["sites"]}
    assert {"vtkMRMLScene", "vtkMRMLSegmentationNode", "vtkSegmentation", "vtkSegment",
            "vtkMRMLColorTableNode", "vtkMRMLSubjectHierarchyNode",
            "vtkMRMLSegmentationStorageNode", "vtkMRMLPlotSeriesNode"} <= classes
    problems = _check_trace(trace)
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_traced_calls_full(tmp_path):
    """All MRML tests, the module's widget tests included; the default run's subset calls
    every (class, method) pair they call."""
    trace = _trace(tmp_path, ALL_MRML_TESTS)
    problems = _check_trace(trace)
    assert not problems, "\n".join(problems)
    (tmp_path / "subset").mkdir()
    subset = _trace(tmp_path / "subset", TRACED_TESTS)
    missed = {tuple(p[:2]) for p in trace["pairs"]} - {tuple(p[:2]) for p in subset["pairs"]}
    assert not missed, f"add a test file calling these to TRACED_TESTS: {sorted(missed)}"


# ----------------------------------------------------------------------------------------
# The extension says which Slicer it supports
# ----------------------------------------------------------------------------------------
def test_extension_metadata_names_the_supported_releases():
    text = (REPO / "CMakeLists.txt").read_text()

    def value(name: str) -> str:
        m = re.search(rf'set\(\s*{name}\s+"([^"]*)"\s*\)', text)
        assert m, name
        return m.group(1)

    oldest, newest = (".".join(r.split(".")[:2]) for r in (api.RELEASES[0], api.RELEASES[-1]))
    assert (value("NNSEG_SLICER_VERSION_MIN"), value("NNSEG_SLICER_VERSION_MAX")) == (
        oldest, newest)
    assert "find_package(Slicer ${NNSEG_SLICER_VERSION_MIN} REQUIRED)" in text
    assert f"3D Slicer {oldest} to {newest}" in value("EXTENSION_DESCRIPTION")
