"""Find the MRML / VTK-Slicer API that Python sources use, by reading their syntax tree.

:func:`scan_source` lists, with file and line:

* ``call`` — ``x.Name(args)`` where ``Name`` is an attribute that a Slicer class of
  slicer-core defines (the receiver's class is unknown: Python is not typed here);
* ``qualified`` — ``slicer.vtkX.Name`` / ``vtkX.Name`` (imported from ``slicer``): the class is
  known exactly (static methods, enum constants);
* ``constant`` — ``x.Name`` read, not called, where ``Name`` is an enum constant of a Slicer
  class (``scene.StartCloseEvent``, ``series.PlotTypeScatter``);
* ``class`` — a Slicer class named in the code: ``slicer.vtkX``, ``from slicer import vtkX``,
  and string literals given as a class name (``scene.AddNewNodeByClass("vtkMRML…")``,
  ``GetNodesByClass``, ``IsA``, ``nodeTypes = [...]``);
* ``util`` — a function of Slicer's Python ``slicer.util`` (``slicer.util.X(...)``,
  ``from slicer.util import X``), with the keyword arguments of the call.

:func:`problems` checks each use but ``util`` with :mod:`mrml_api_check`;
:func:`util_problems` checks ``util`` uses against a release's ``slicer/util.py``.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import mrml_api_check as api

#: Methods whose first argument is a class name.
CLASS_ARGUMENT = {"AddNewNodeByClass", "CreateNodeByClass", "GetNodesByClass",
                  "GetNumberOfNodesByClass", "GetNthNodeByClass", "GetFirstNodeByClass",
                  "IsA", "GetNodeByClass", "GetSingletonNode", "GetNodesByClassByName",
                  "GetFirstNodeByName", "AddNewNodeByClassWithID"}
#: Attributes assigned a list of class names (qMRMLNodeComboBox's ``nodeTypes``).
CLASS_LIST_ATTRIBUTES = {"nodeTypes"}
CLASS_RE = re.compile(r"vtk[A-Z][A-Za-z0-9]*")


@dataclass(frozen=True)
class Use:
    """One use of the Slicer API in a source file."""

    path: str
    line: int
    kind: str              # call | qualified | constant | class
    name: str              # method / constant / class name
    cls: str | None = None   # the class, when known exactly
    nargs: int | None = None  # positional arguments of a call (None: unknown)
    keywords: tuple[str, ...] = ()  # keyword arguments of a call

    def where(self) -> str:
        return f"{self.path}:{self.line}"


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.uses: list[Use] = []
        self.slicer_modules = {"slicer"}
        self.imported: dict[str, str] = {}   # local name → Slicer class
        self.call_funcs: set[int] = set()

    # names bound to slicer / its classes ---------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name == "slicer":
                self.slicer_modules.add(alias.asname or "slicer")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module == "slicer.util":
            for alias in node.names:
                self._add(node, "util", alias.name)
        if node.module == "slicer":
            for alias in node.names:
                if CLASS_RE.fullmatch(alias.name):
                    self.imported[alias.asname or alias.name] = alias.name
                    self._add(node, "class", alias.name, alias.name)

    def _class_of(self, node: ast.expr) -> str | None:
        """The Slicer class an expression names (``slicer.vtkX`` or an imported ``vtkX``)."""
        if isinstance(node, ast.Name):
            return self.imported.get(node.id)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in self.slicer_modules and CLASS_RE.fullmatch(node.attr):
            return node.attr
        return None

    # uses -------------------------------------------------------------------------------
    def _add(self, node, kind: str, name: str, cls: str | None = None,
             nargs: int | None = None, keywords: tuple[str, ...] = ()) -> None:
        self.uses.append(Use(self.path, node.lineno, kind, name, cls, nargs, keywords))

    def _is_util(self, node: ast.expr) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "util" \
            and isinstance(node.value, ast.Name) and node.value.id in self.slicer_modules

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute):
            self.call_funcs.add(id(func))
            starred = any(isinstance(a, ast.Starred) for a in node.args) or node.keywords
            nargs = None if starred else len(node.args)
            cls = self._class_of(func.value)
            if self._is_util(func.value):
                keywords = tuple(k.arg for k in node.keywords if k.arg is not None)
                self._add(node, "util", func.attr, None,
                          None if any(isinstance(a, ast.Starred) for a in node.args)
                          else len(node.args), keywords)
            elif cls is not None:
                self._add(node, "qualified", func.attr, cls, nargs)
            elif func.attr in api.core_owners():
                self._add(node, "call", func.attr, None, nargs)
            if func.attr in CLASS_ARGUMENT and node.args:
                self._class_literal(node.args[0])
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        cls = self._class_of(node)
        if cls is not None:
            self._add(node, "class", cls, cls)
        elif id(node) not in self.call_funcs:
            owner = self._class_of(node.value)
            if self._is_util(node.value):
                self._add(node, "util", node.attr)
            elif owner is not None:
                self._add(node, "qualified", node.attr, owner)
            elif _is_constant(node.attr):
                self._add(node, "constant", node.attr)
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            if isinstance(target, ast.Attribute) and target.attr in CLASS_LIST_ATTRIBUTES \
                    and isinstance(node.value, (ast.List, ast.Tuple)):
                for elt in node.value.elts:
                    self._class_literal(elt)
        self.generic_visit(node)

    def _class_literal(self, node: ast.expr) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and CLASS_RE.fullmatch(node.value):
            self._add(node, "class", node.value, node.value)


def _is_constant(name: str) -> bool:
    """True when ``name`` is an enum constant (not a method) of a Slicer class in slicer-core."""
    owners = api.core_owners().get(name)
    if not owners:
        return False
    classes = api.slicer_core_classes()
    return any(isinstance(getattr(classes[o], name, None), int) for o in owners)


def scan_source(text: str, path: str = "<source>") -> list[Use]:
    """All uses of the Slicer API in one Python source."""
    scanner = _Scanner(path)
    scanner.visit(ast.parse(text, filename=path))
    return sorted(scanner.uses, key=lambda u: (u.line, u.kind, u.name))


def scan_files(paths: Iterable[Path], root: Path) -> list[Use]:
    uses: list[Use] = []
    for p in sorted(paths):
        uses += scan_source(p.read_text(encoding="utf-8"), str(p.relative_to(root)))
    return uses


def util_problems(use: Use, util_source: str, release: str) -> list[str]:
    """What ``slicer.util`` of one release (its ``util.py`` text) lacks for this use."""
    tree = ast.parse(util_source)
    defined: dict[str, ast.AST] = {}
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
            defined[stmt.name] = stmt
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for alias in stmt.names:
                defined[(alias.asname or alias.name).split(".")[0]] = stmt
        elif isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    defined[target.id] = stmt
    found = defined.get(use.name)
    if found is None:
        return [f"Slicer {release}: slicer.util has no {use.name}"]
    if not isinstance(found, ast.FunctionDef):
        return []
    args = found.args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    out = [f"Slicer {release}: slicer.util.{use.name} has no argument {k}"
           for k in use.keywords if k not in names and args.kwarg is None]
    positional = len(args.posonlyargs + args.args)
    if use.nargs is not None and use.nargs > positional and args.vararg is None:
        out.append(f"Slicer {release}: slicer.util.{use.name} takes {positional} positional "
                   f"arguments, called with {use.nargs}")
    return out


def problems(use: Use, apis: list | None = None) -> list[str]:
    """What the supported releases lack for this use ([] when every release has it)."""
    if use.kind == "util":
        raise ValueError("check slicer.util uses with util_problems")
    if use.kind == "class":
        return api.check_class(use.name, apis)
    if use.kind == "qualified":
        assert use.cls is not None
        return api.check_pair(use.cls, use.name, use.nargs, apis)
    return api.check_name(use.name, use.nargs, apis)
