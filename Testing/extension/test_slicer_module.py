"""Static checks of the Slicer module (NNSeg/NNSeg.py + NNSeg.ui) without a Slicer app."""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from NNSegLib.planning.plans import CONFIGURATIONS

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "NNSeg" / "NNSeg.py"
PANELS = REPO / "NNSeg" / "NNSegPanels"
UI = REPO / "NNSeg" / "Resources" / "UI" / "NNSeg.ui"


@pytest.fixture(scope="module")
def tree() -> ast.Module:
    return ast.parse(MODULE.read_text(encoding="utf-8"), feature_version=(3, 9))


@pytest.fixture(scope="module")
def everything(tree) -> ast.Module:
    """NNSeg.py and its panel controllers (NNSeg/NNSegPanels) as one module body."""
    body = list(tree.body)
    for path in sorted(PANELS.glob("*.py")):
        body += ast.parse(path.read_text(encoding="utf-8"), feature_version=(3, 9)).body
    return ast.Module(body=body, type_ignores=[])


def panel_classes(everything: ast.Module) -> list:
    """The Widget and the panel controllers (the classes of NNSegPanels)."""
    return [n for n in everything.body if isinstance(n, ast.ClassDef) and n.name not in (
        "NNSeg", "NNSegParameterNode", "NNSegLogic", "NNSegTest")]


@pytest.fixture(scope="module")
def ui() -> ET.Element:
    return ET.parse(UI).getroot()


def widgets(ui: ET.Element) -> dict[str, ET.Element]:
    return {w.get("name"): w for w in ui.iter("widget")}


def string_prop(widget: ET.Element, name: str) -> str | None:
    for p in widget.findall("property"):
        if p.get("name") == name:
            child = p[0]
            return child.text
    return None


def parameter_fields(tree: ast.Module) -> dict[str, ast.AnnAssign]:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(
                getattr(d, "id", None) == "parameterNodeWrapper" for d in node.decorator_list):
            return {s.target.id: s for s in node.body if isinstance(s, ast.AnnAssign)}
    raise AssertionError("no @parameterNodeWrapper class in NNSeg.py")


def test_module_compiles_for_python_39(tree):
    compile(tree, str(MODULE), "exec")
    # @parameterNodeWrapper evaluates annotations at runtime: no PEP 604 unions, no
    # postponed evaluation that would hide them.
    future = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
    assert not future
    unions = [ast.unparse(n.annotation) for n in ast.walk(tree)
              if isinstance(n, (ast.AnnAssign, ast.arg)) and n.annotation is not None
              and any(isinstance(b, ast.BinOp) for b in ast.walk(n.annotation))]
    assert not unions, unions


def test_ui_is_valid_and_names_are_unique(ui):
    assert ui.tag == "ui"
    root = ui.find("widget")
    assert root.get("class") == "qMRMLWidget" and root.get("name") == "NNSeg"
    names = [w.get("name") for w in ui.iter("widget")]
    assert len(names) == len(set(names)), "duplicate objectName in NNSeg.ui"
    panels = [w for w in ui.iter("widget") if w.get("class") == "ctkCollapsibleButton"]
    assert [string_prop(p, "text") for p in panels] == [
        "1. Dataset", "2. Plan", "3. Train", "4. Segment", "5. Batch and review"]
    declared = {c.findtext("class") for c in ui.iter("customwidget")}
    used = {w.get("class") for w in ui.iter("widget")}
    assert {c for c in used if c.startswith(("ctk", "qMRML"))} <= declared
    # every MRML selector gets the scene from the root widget
    selectors = {w.get("name") for w in ui.iter("widget") if w.get("class", "").startswith(
        "qMRML") and w.get("class") != "qMRMLWidget"}
    connected = {c.findtext("receiver") for c in ui.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    assert selectors == connected


def test_every_ui_attribute_used_exists(everything, ui):
    used = set()
    for node in ast.walk(everything):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and node.value.attr == "ui" and isinstance(node.value.value, ast.Name)
                and node.value.value.id == "self"):
            used.add(node.attr)
    missing = sorted(used - set(widgets(ui)))
    assert used and not missing, f"self.ui.<name> not in NNSeg.ui: {missing}"


def test_parameter_fields_map_to_widgets(tree, ui):
    fields = parameter_fields(tree)
    bound: dict[str, list[str]] = {}
    for name, w in widgets(ui).items():
        param = string_prop(w, "SlicerParameterName")
        if param:
            bound.setdefault(param, []).append(name)
    assert set(fields) == set(bound), (
        f"fields without widget: {sorted(set(fields) - set(bound))}; "
        f"widgets naming unknown fields: {sorted(set(bound) - set(fields))}")
    assert all(len(v) == 1 for v in bound.values()), bound
    expected_class = {"vtkMRMLScalarVolumeNode": "qMRMLNodeComboBox",
                      "vtkMRMLSegmentationNode": "qMRMLNodeComboBox",
                      "pathlib.Path": "ctkPathLineEdit",
                      "OptionalPath": "ctkPathLineEdit", "bool": "QCheckBox", "str": "QLineEdit",
                      "Annotated[int, WithinRange": "QSpinBox",
                      "Annotated[float, WithinRange": ("QDoubleSpinBox", "ctkSliderWidget")}
    for name, stmt in fields.items():
        widget = widgets(ui)[bound[name][0]]
        annotation = ast.unparse(stmt.annotation)
        kind = annotation if annotation in expected_class else annotation.split("(")[0]
        if kind in expected_class:
            assert widget.get("class") in expected_class[kind], (name, annotation)
            if isinstance(expected_class[kind], str):
                assert widget.get("class") == expected_class[kind], (name, annotation)
        if annotation.startswith("Annotated[str, Choice("):
            choices = ast.literal_eval(_resolve(stmt.annotation.slice.elts[1].args[0], tree))
            items = [i.findtext("property/string") for i in widget.findall("item")]
            assert widget.get("class") == "QComboBox" and items == choices, (name, items)
            assert stmt.value is not None and ast.literal_eval(stmt.value) == choices[0]


def _resolve(node: ast.AST, tree: ast.Module) -> str:
    """Source of a choice list, following one module-level name (``TRAIN_CONFIGURATIONS``)."""
    if isinstance(node, ast.Name):
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign) and any(
                    getattr(t, "id", None) == node.id for t in stmt.targets):
                return ast.unparse(stmt.value)
    return ast.unparse(node)


def test_train_choices_are_the_plan_configurations(tree):
    source = _resolve(ast.Name("TRAIN_CONFIGURATIONS"), tree)
    assert sorted(ast.literal_eval(source)) == sorted(CONFIGURATIONS)


def test_widget_defaults_match_parameter_defaults(tree, ui):
    fields = parameter_fields(tree)
    w = widgets(ui)
    assert ast.literal_eval(fields["memoryBudgetGB"].value) == float(
        w["memoryBudgetSpinBox"].find("property[@name='value']/double").text) == 8.0
    assert ast.literal_eval(fields["maxEpochs"].value) == int(
        w["maxEpochsSpinBox"].find("property[@name='value']/number").text) == 1000
    assert ast.literal_eval(fields["tta"].value) is True
    assert w["ttaCheckBox"].find("property[@name='checked']/bool").text == "true"
    by_param = {string_prop(x, "SlicerParameterName"): x for x in w.values()
                if string_prop(x, "SlicerParameterName")}
    ranged = [f for f, stmt in fields.items() if "WithinRange(" in ast.unparse(stmt.annotation)]
    assert {"memoryBudgetGB", "maxEpochs", "timeBudgetMinutes", "fineTuneEpochs",
            "overlayOpacity"} <= set(ranged)
    for field in ranged:   # range and default of every bounded field match its widget
        widget = by_param[field]
        kind = "double" if fields[field].annotation.slice.elts[0].id == "float" else "number"
        call = fields[field].annotation.slice.elts[1]
        lo, hi = (ast.literal_eval(a) for a in call.args)
        assert float(widget.find(f"property[@name='minimum']/{kind}").text) == lo, field
        assert float(widget.find(f"property[@name='maximum']/{kind}").text) == hi, field
        assert float(widget.find(f"property[@name='value']/{kind}").text) == \
            ast.literal_eval(fields[field].value), field
    # "Train for N minutes": off by default, one hour when switched on
    assert ast.literal_eval(fields["timeBudget"].value) is False
    assert ast.literal_eval(fields["timeBudgetMinutes"].value) == 60
    # 0 epochs = the fine-tuning default, shown as such
    assert string_prop(w["fineTuneEpochsSpinBox"], "specialValueText") == "default (50)"
    from NNSegLib.training.run_config import FINE_TUNE_EPOCHS

    assert FINE_TUNE_EPOCHS == 50


def test_module_shape_and_lazy_heavy_imports(tree, everything):
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {"NNSeg", "NNSegParameterNode", "NNSegWidget", "NNSegLogic", "NNSegTest"} <= set(
        classes)
    init = next(f for f in classes["NNSeg"].body if getattr(f, "name", "") == "__init__")
    src = ast.unparse(init)
    assert "self.parent.categories = [translate('qSlicerAbstractCoreModule', 'Segmentation')]" \
        in src
    assert "self.parent.title = _('NNSeg')" in src
    top_imports = set()
    for n in everything.body:
        if isinstance(n, ast.Import):
            top_imports |= {a.name.split(".")[0] for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            top_imports.add((n.module or "").split(".")[0])
    assert not top_imports & {"torch", "numpy", "NNSegLib", "SimpleITK", "qt", "ctk"}, top_imports
    # the Widget and the panels never run library work themselves and never import NNSegLib:
    # only self.logic
    controllers = panel_classes(everything)
    assert {c.name for c in controllers} >= {"NNSegWidget", "DatasetPanel", "PlanPanel",
                                             "TrainPanel", "SegmentPanel", "ReviewPanel"}
    for cls in controllers:
        widget_src = ast.unparse(cls)
        for forbidden in ("NNSegLib", "_lib(", "load_model", "predict_array", "subprocess"):
            assert forbidden not in widget_src, (cls.name, forbidden)
    # Apply buttons double as Cancel buttons while a job runs
    methods = {f.name: f for c in controllers for f in c.body if isinstance(f, ast.FunctionDef)}
    for handler in ("onPlan", "onTrain", "onSegment", "onFindBest", "onBatch", "onFineTune"):
        assert "self.w.jobs.cancel(" in ast.unparse(methods[handler]), handler
    # thin: no Widget, panel or Logic method is long (the decisions live in NNSegLib.slicer)
    for cls in [*controllers, classes["NNSegLogic"]]:
        for f in cls.body:
            if isinstance(f, ast.FunctionDef):
                assert f.end_lineno - f.lineno < 40, f"{cls.name}.{f.name} is long"


def test_translation_function_with_fallback_and_no_bare_user_strings(tree, everything):
    """User-visible strings go through Slicer's translation function (``_``), which falls
    back to the text itself on Slicers without ``slicer.i18n``."""
    guarded = [n for n in everything.body if isinstance(n, ast.Try)]
    assert any("from slicer.i18n import tr as _" in ast.unparse(t) and
               any(h.type is not None and ast.unparse(h.type) == "ImportError"
                   for h in t.handlers) for t in guarded)
    shown = {"errorDisplay", "infoDisplay", "warningDisplay", "confirmOkCancelDisplay",
             "confirmYesNoDisplay", "tryWithErrorDisplay", "getExistingDirectory", "addRow",
             "confirm"}
    bare = []
    for node in (n for cls in panel_classes(everything) for n in ast.walk(cls)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) in shown:
            for arg in node.args[:2]:
                if isinstance(arg, (ast.JoinedStr, ast.Constant)) and isinstance(
                        getattr(arg, "value", ""), str) and getattr(arg, "value", "x") != "":
                    bare.append(ast.unparse(node))
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Attribute) and t.attr in ("text", "toolTip")
                for t in node.targets):
            if isinstance(node.value, (ast.JoinedStr, ast.Constant)) and getattr(
                    node.value, "value", None) not in ("", None):
                bare.append(ast.unparse(node))
    assert not bare, bare
    assert "set_translator(_)" in ast.unparse(tree)  # NNSegLib's texts use the same function


def test_every_widget_name_in_the_module_exists_in_the_ui(everything, ui):
    """Names used through getattr(self.ui, name) (buttons tables, rule results)."""
    names = set(widgets(ui))
    apply_buttons = ast.parse(_resolve(ast.Name("APPLY_BUTTONS"), everything), mode="eval").body
    button_names = {t.elts[0].value for t in apply_buttons.values}
    assert len(button_names) == 6 and button_names <= names
    job_widgets = ast.literal_eval(_resolve(ast.Name("JOB_WIDGETS"), everything))
    assert set(job_widgets) == {k.value for k in apply_buttons.keys}
    assert {n for pair in job_widgets.values() for n in pair} <= names
    # the panels' BUTTONS and TABLES, and what their connect() methods name
    setup = [f for n in panel_classes(everything) for f in n.body
             if getattr(f, "name", "") in ("setup", "connect")
             or ast.unparse(f).startswith(("BUTTONS", "TABLES"))]
    connected = {c.value for f in setup for c in ast.walk(f) if isinstance(c, ast.Constant)
                 and isinstance(c.value, str) and c.value.endswith(("Button", "TableWidget"))}
    assert connected and connected <= names, connected - names
    from NNSegLib.slicer.module_logic import LOCKS, ModuleState, module_view

    assert set(module_view(ModuleState()).rules) <= names
    assert {n for v in LOCKS.values() for n in v} <= names


def test_new_fields_have_their_widgets_and_defaults(tree, ui):
    fields, w = parameter_fields(tree), widgets(ui)
    checked = {name: (w[name].find("property[@name='checked']/bool") is not None and
                      w[name].find("property[@name='checked']/bool").text == "true")
               for name in w if w[name].get("class") == "QCheckBox"}
    by_param = {string_prop(x, "SlicerParameterName"): n for n, x in w.items()
                if string_prop(x, "SlicerParameterName")}
    for field, stmt in fields.items():
        if ast.unparse(stmt.annotation) == "bool":
            assert checked[by_param[field]] is ast.literal_eval(stmt.value), field
    assert {"memoryBudgetAuto", "detachTraining", "postprocessing", "show3D", "timeBudget",
            "allowUnfinished", "fineTuneAdaptHead"} <= set(fields)
    assert not ast.literal_eval(fields["allowUnfinished"].value)  # unfinished folds: opt in
    assert not ast.literal_eval(fields["previewFirst"].value)  # the preview: opt in


# ------------------------------------------------------------------ the Logic, headless
@pytest.fixture
def module(monkeypatch):
    """Import NNSeg.py with the Slicer application stubbed (real MRML, see slicer_stubs)."""
    pytest.importorskip("slicer", reason="needs slicer-core for real MRML nodes")
    import slicer_stubs

    from NNSegLib.slicer.scene import mrml

    scene = mrml.new_scene().scene
    slicer_stubs.install(monkeypatch, scene)
    return slicer_stubs.load_module(), scene


def test_logic_export_and_load_prediction(module, tmp_path):
    import json

    import numpy as np

    from NNSegLib.data.io import Geometry, SimpleITKIO
    from NNSegLib.slicer.scene import mrml

    mod, scene = module
    logic = mod.NNSegLogic()
    geo = Geometry((5, 6, 7), (2.5, 1.0, 0.8), (1.0, 2.0, 3.0), (0, 1, 0, -1, 0, 0, 0, 0, 1))
    image = np.arange(np.prod(geo.shape), dtype=np.float32).reshape(geo.shape)
    volume = mrml.volume_node_from_array(scene, image, geo, "vol")
    labels = (image % 3).astype(np.uint8)
    seg = mrml.segmentation_from_labels(scene, labels, geo, {0: "bg", 1: "Liver", 2: "tumor"},
                                        reference_volume=volume)
    node = logic.getParameterNode().parameterNode
    assert logic.lib.dataset.describe_labels(scene, node) == "No cases yet."
    logic.lib.dataset.add_case(node, [volume], seg)
    assert logic.lib.dataset.case_rows(node) == [["vol", seg.GetName(), "Liver, tumor"]]
    assert logic.lib.dataset.describe_labels(scene, node).startswith(
        "1 case(s); labels 0: background, 1: Liver, 2: tumor")
    report = logic.lib.dataset.export_dataset(scene, node, tmp_path / "Dataset005_X", ["CT"])
    assert report.splitlines()[-1].startswith("OK:")
    # a model folder with dataset.json; the "job" output is written by hand here
    model = tmp_path / "model"
    model.mkdir()
    (model / "dataset.json").write_text(json.dumps({
        "name": "Dataset005_X", "channel_names": {"0": "CT"},
        "labels": {"background": 0, "Liver": 1, "tumor": 2}}))
    info = logic.lib.segment.model_info(model)
    assert info["channels"] == ["CT"] and info["labels"] == {0: "background", 1: "Liver",
                                                             2: "tumor"}
    assert logic.lib.segment.overwrite_decision(scene, None).action == "new"
    from NNSegLib.slicer.segment_run import capture_segment_run

    run = capture_segment_run(scene, [[volume]], [None], model, "0-1", "cpu", False, True)
    written, wgeo = SimpleITKIO().read(run.tmp / "input" / "case000_0000.nii.gz")
    np.testing.assert_array_equal(written, image)
    assert run.steps[-1][:3] == ["predict", "-i", str(run.tmp / "input")]
    assert run.steps[-1][-3:] == ["--folds", "0", "1"] and "--no-tta" in run.steps[-1]
    SimpleITKIO().write(labels, wgeo, run.tmp / "output" / "case000.nii.gz")
    SimpleITKIO().write(np.full(geo.shape, 0.25, np.float32), wgeo,
                        run.tmp / "output" / "case000_uncertainty.nii.gz")
    [result] = logic.lib.segment.deliver_results(scene, run)
    run.cleanup()
    out, unc = result.segmentation, result.uncertainty
    assert mrml.segment_names(out) == ["Liver", "tumor"]
    back, _ = mrml.labels_from_segmentation(scene, out, {"Liver": 1, "tumor": 2}, volume)
    np.testing.assert_array_equal(back, labels)
    u, ugeo = mrml.array_from_volume_node(unc)
    assert float(u.min()) == float(u.max()) == 0.25
    assert ugeo.mismatch(geo) is None


def test_logic_plan_table_and_cv_summary(module, tmp_path):
    import json

    mod, _scene = module
    logic = mod.NNSegLogic()
    summary = logic.lib.train.cross_validation_summary(tmp_path, "3d_fullres")
    assert summary == "No cross-validation results yet."
    for fold, dice in ((0, 0.8), (1, 0.9)):
        d = tmp_path / "results" / "3d_fullres" / f"fold_{fold}"
        d.mkdir(parents=True)
        (d / "validation_summary.json").write_text(
            json.dumps({"foreground_mean": {"dice": dice}}))
    assert logic.lib.train.cross_validation_summary(tmp_path, "3d_fullres") == (
        "CV Dice 0.850 (fold_0: 0.800, fold_1: 0.900)")
    assert logic.lib.train.train_commands("D", tmp_path, "2d", "1", 5, "cpu", False)[1][:4] == [
        "train", "D", "2d", "1"]


def test_logic_plans_table(module, tmp_path):
    from NNSegLib.planning.plans import ConfigurationPlan, IntensityProperties, Plans

    mod, _scene = module
    config = ConfigurationPlan(
        name="3d_fullres", spatial_dims=3, data_identifier="d", spacing=(1.0, 0.5, 0.5),
        median_shape=(36, 50, 35), patch_size=(40, 56, 40), batch_size=9,
        strides=((1, 1, 1), (2, 2, 2)), kernel_sizes=((3, 3, 3), (3, 3, 3)),
        features_per_stage=(30, 60))
    Plans("D", "paper", 8.0, {"0": "MRI"}, {"background": 0, "a": 1},
          {"0": IntensityProperties(1.0, 2.0, 0.0, 3.0)},
          {"3d_fullres": config}).save(tmp_path / "plans.json")
    header, rows = mod.NNSegLogic().lib.plan.plans_table(tmp_path)
    assert header == ["", "3d_fullres"]
    table = {r[0]: r[1] for r in rows}
    assert table["patch size"] == "40×56×40" and table["batch size"] == "9"
    assert table["spacing (mm)"] == "1×0.5×0.5" and table["stages"] == "2"


def test_every_logic_method_the_widget_calls_exists(tree, everything):
    """``self.logic.X`` in the Widget and the panels, ``logic.X`` in the self-test: defined by
    NNSegLogic; ``….lib.X`` and ``….lib.X.Y`` (a panel's own module): ModuleLogic has them."""
    from NNSegLib.slicer.module_logic import ModuleLogic

    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    used = {node.attr for cls in panel_classes(everything) for node in ast.walk(cls)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "logic"}
    used |= {node.attr for node in ast.walk(everything)
             if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
             and node.value.id == "logic"}
    own = {f.name for f in classes["NNSegLogic"].body if isinstance(f, ast.FunctionDef)}
    missing = sorted(n for n in used if n not in own and n != "lib")
    assert used and not missing, missing
    lib = ModuleLogic()
    chains = [node for node in ast.walk(everything) if isinstance(node, ast.Attribute)
              and isinstance(node.value, ast.Attribute) and node.value.attr == "lib"]
    missing = sorted(c.attr for c in chains if not hasattr(lib, c.attr))
    assert chains and not missing, missing
    inner = [(node.value.attr, node.attr) for node in ast.walk(everything)
             if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
             and isinstance(node.value.value, ast.Attribute) and node.value.value.attr == "lib"]
    missing = sorted(f"{a}.{b}" for a, b in inner if not hasattr(getattr(lib, a), b))
    assert inner and not missing, missing


def test_new_controls_say_what_the_messages_call_them(ui):
    """Texts NNSegLib.slicer refers to ("check Use unfinished folds", "Train for …") are the
    widgets' own labels; the batch panel's scene-volume selector gets the scene."""
    w = widgets(ui)
    assert string_prop(w["allowUnfinishedCheckBox"], "text").startswith("Use unfinished folds")
    assert string_prop(w["timeBudgetCheckBox"], "text") == "Train for"
    assert string_prop(w["timeBudgetSpinBox"], "suffix") == " min"
    assert w["batchVolumesSelector"].get("class") == "qMRMLCheckableNodeComboBox"
    for name in ("batchButton", "acceptButton", "needsCorrectionButton", "addToDatasetButton",
                 "fineTuneButton"):
        assert w[name].get("class") == "QPushButton" and string_prop(w[name], "toolTip"), name
    for name in ("reviewTableWidget", "fineTuneTableWidget"):
        assert w[name].get("class") == "QTableWidget"
    from NNSegLib.slicer.review_panel import SOURCES

    items = [i.findtext("property/string") for i in w["batchSourceComboBox"].findall("item")]
    assert items == list(SOURCES)


def test_readme_describes_every_panel_and_control(ui):
    """README's "Use in 3D Slicer" names each panel of NNSeg.ui and the controls it explains."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Use in 3D Slicer", 1)[1].split("\n## ", 1)[0]
    panels = [string_prop(p, "text").split(". ", 1)[1] for p in ui.iter("widget")
              if p.get("class") == "ctkCollapsibleButton"]
    for title in panels:
        assert f"**{title}**" in section, title
    w = widgets(ui)
    for name in ("allowUnfinishedCheckBox", "batchButton", "acceptButton",
                 "needsCorrectionButton", "addToDatasetButton", "fineTuneButton",
                 "previewFirstCheckBox"):
        text = string_prop(w[name], "text").split(" (")[0]
        assert f"*{text}*" in section, text
    assert "*Train for N minutes*" in section and "--time-budget" in section
    assert "nnseg predict --fast" in section and "expected time" in section
