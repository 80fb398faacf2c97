"""The package's import rule, checked on the source: floors that only import downwards.

NNSegLib's subpackages form floors (``FLOORS``, lowest first). A module may import its own
subpackage and any lower floor, never a higher one; the CLI and the demo at the top may
import anything, and nothing imports them. Lazy imports inside functions count too.

Also the size rules: no module of NNSegLib/ or NNSeg/ over 500 lines, no function of
NNSegLib/ over 80 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "NNSegLib"

#: Lowest first. Keep in step with NNSegLib/README.md.
FLOORS = ("util", "jobs", "data", "planning", "preprocessing", "network", "evaluation",
          "postprocessing", "inference", "training", "slicer")
TOP = {"cli", "demo", "__main__"}


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every ``NNSegLib…`` module name ``path`` imports (module-level and lazy), with lines."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "NNSegLib":
                found += [(f"NNSegLib.{a.name}", node.lineno) for a in node.names]
            elif node.module.startswith("NNSegLib."):
                found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("NNSegLib")]
    return found


def _owner(module: str) -> str:
    """``NNSegLib.training.trainer`` → ``training``; ``NNSegLib.cli`` → ``cli``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _modules() -> list[Path]:
    return sorted(p for p in LIB.rglob("*.py"))


def test_every_subpackage_has_a_floor():
    packages = {p.name for p in LIB.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(FLOORS), packages ^ set(FLOORS)
    top = {p.stem for p in LIB.glob("*.py")} - {"__init__"}
    assert top == TOP, top ^ TOP


def test_imports_point_down_only():
    upward = []
    for path in _modules():
        rel = path.relative_to(LIB)
        here = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if here in TOP or here == "__init__":
            continue
        for module, line in _imports(path):
            there = _owner(module)
            if there in ("__version__", "__init__"):
                continue
            if there in TOP or FLOORS.index(there) > FLOORS.index(here):
                upward.append(f"{rel}:{line} imports {module} ({here} → {there})")
    assert not upward, "imports that point up a floor:\n" + "\n".join(upward)


def test_no_import_cycle_between_modules():
    graph = {}
    for path in _modules():
        name = ".".join(("NNSegLib", *path.relative_to(LIB).with_suffix("").parts))
        graph[name.removesuffix(".__init__")] = {m for m, _ in _imports(path)}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                cycle.extend(stack[stack.index(nxt):] + [node, nxt] if nxt in stack
                             else [node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, [*stack, node]):
                return True
        state[node] = 2
        return False

    for node in sorted(graph):
        if state.get(node) is None and visit(node, []):
            break
    assert not cycle, "import cycle: " + " → ".join(cycle)


def test_jobs_import_only_util():
    """The job floor (process, detached, runner, board) stands on ``util`` alone."""
    found = {(str(path.relative_to(LIB)), module)
             for path in sorted((LIB / "jobs").glob("*.py")) for module, _ in _imports(path)}
    assert found, "the jobs floor imports nothing at all: is the check reading it?"
    assert {_owner(m) for _, m in found} <= {"util", "jobs"}, sorted(found)


def _slicer_imports(path: Path) -> set[str]:
    """The ``NNSegLib.slicer…`` modules ``path`` imports, ``from NNSegLib.slicer import x``
    read as ``NNSegLib.slicer.x``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module in ("NNSegLib.slicer", "NNSegLib.slicer.scene",
                               "NNSegLib.slicer.panels"):
                found |= {f"{node.module}.{a.name}" for a in node.names}
            elif node.module.startswith("NNSegLib.slicer."):
                found.add(node.module)
    return found


def test_the_slicer_side_has_rooms_scene_below_panels_and_panels_apart():
    """``slicer/scene`` (MRML) imports only itself of the slicer side; nothing below the panels
    imports them; a panel imports ``panels.common``, never another panel; only
    ``module_logic`` puts the panels together."""
    slicer = LIB / "slicer"
    found = {path: _slicer_imports(path) for path in sorted(slicer.rglob("*.py"))}
    assert found[slicer / "panels" / "train.py"], "is the check reading the panels?"
    problems = []
    for path, modules in found.items():
        rel = path.relative_to(slicer).as_posix()
        for m in sorted(modules):
            if rel.startswith("scene/") and not m.startswith("NNSegLib.slicer.scene"):
                problems.append(f"{rel} (scene) imports {m}")
            if rel.startswith("panels/"):
                own = "NNSegLib.slicer.panels." + path.stem
                if m.startswith("NNSegLib.slicer.panels.") and m not in (
                        own, "NNSegLib.slicer.panels.common"):
                    problems.append(f"{rel} imports another panel, {m}")
            elif rel != "module_logic.py" and m.startswith(("NNSegLib.slicer.panels",
                                                             "NNSegLib.slicer.module_logic")):
                problems.append(f"{rel} (below the panels) imports {m}")
    assert not problems, problems


def test_errors_module_imports_nothing_of_the_project():
    assert _imports(LIB / "util" / "errors.py") == []


@pytest.mark.parametrize("forbidden", ["qt", "slicer", "nnunetv2"])
def test_only_the_slicer_bridge_imports_slicer_and_nothing_imports_qt(forbidden):
    offenders = []
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == forbidden or n.startswith(forbidden + ".") for n in names):
                offenders.append(str(path.relative_to(LIB)))
    allowed = {"slicer": {"slicer/scene/mrml.py"}}.get(forbidden, set())
    assert set(offenders) <= allowed, offenders


def test_every_module_parses_with_python_3_9_grammar():
    """Slicer 5.6 ships Python 3.9: no newer syntax anywhere in the library."""
    for path in _modules():
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 9))


def test_no_string_imports_and_no_attribute_forwarding():
    """``importlib.import_module("NNSegLib…")`` and ``__getattr__`` forwarding hide the path
    from a click to the code that runs, from readers and from the import checks above. Only
    the CLI's command registry (``cli.COMMANDS``) loads modules by name."""
    module_dir = LIB.parent / "NNSeg"
    offenders = []
    for path in [*_modules(), *sorted(module_dir.rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            called = (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                      and node.func.attr == "import_module")
            forwarding = isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
            if called or forwarding:
                offenders.append(str(path.relative_to(LIB.parent)))
    assert offenders == ["NNSegLib/cli.py"], offenders


#: The size rules of the developer guide (issue 24).
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
SLICER_MODULE = LIB.parent / "NNSeg"


def test_no_module_over_500_lines():
    modules = _modules() + sorted(SLICER_MODULE.rglob("*.py"))
    assert len(modules) > 100, "too few modules found: is the check reading the tree?"
    counts = {path: len(path.read_text(encoding="utf-8").splitlines()) for path in modules}
    offenders = [f"{path.relative_to(LIB.parent)}: {n} lines"
                 for path, n in counts.items() if n > MAX_MODULE_LINES]
    assert not offenders, (f"modules over {MAX_MODULE_LINES} lines (move a cohesive part "
                           "into a module of its own):\n" + "\n".join(offenders))


def _function_lengths(source: str) -> list[tuple[str, int]]:
    """``(name, lines)`` of every ``def`` in ``source`` (methods and nested ones included),
    counted from the ``def`` line to the function's last line (decorators not counted)."""
    return [(node.name, node.end_lineno - node.lineno + 1)
            for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno is not None]


def test_function_lengths_count_methods_and_nested_functions():
    source = ("class A:\n    @staticmethod\n    def method():\n        def inner():\n"
              "            return 1\n\n        return inner\n\n\nasync def job():\n"
              "    pass\n")
    assert sorted(_function_lengths(source)) == [("inner", 2), ("job", 2), ("method", 5)]


def test_no_function_over_80_lines():
    offenders = [f"{path.relative_to(LIB.parent)}:{name} {lines} lines"
                 for path in _modules()
                 for name, lines in _function_lengths(path.read_text(encoding="utf-8"))
                 if lines > MAX_FUNCTION_LINES]
    assert not offenders, (f"functions over {MAX_FUNCTION_LINES} lines (split them into "
                           "steps):\n" + "\n".join(offenders))
