"""Check MRML / VTK-Slicer calls against the API of the supported Slicer releases.

``slicer-core`` from PyPI (what the tests run) is Slicer 5.13, newer than any release; a
method it has may be missing from the Slicer a clinician runs. ``mrml_api/slicer-<version>.json``
hold the public API of each supported release, read from its C++ headers by
``tools/extract_mrml_api.py`` (classes, superclasses, methods with the number of arguments of
each overload, enum constants).

:class:`ReleaseApi` answers "does class C have method M (own or inherited) in this release";
:func:`check_pair` applies it to a call seen at run time (:mod:`mrml_trace`), and
:mod:`mrml_call_scan` to the calls written in the sources.

A class's chain is walked through the facts; where it leaves them (``vtkObject``,
``vtkImageData``… — VTK's own classes, not Slicer's) the method is looked up on that VTK class
in the installed ``vtk``: VTK's API is not what these facts cover.
"""

from __future__ import annotations

import json
import keyword
from dataclasses import dataclass
from functools import cache
from pathlib import Path

FACTS_DIR = Path(__file__).resolve().parent / "mrml_api"
#: Supported releases: the oldest (5.10.0) and what a clinician downloads today (5.12.3).
RELEASES = ("5.10.0", "5.12.3")
#: The release before: not supported (NNSegLib calls MRML methods it lacks); its facts
#: show why the minimum is 5.10.
OLDER_RELEASE = "5.8.1"
#: The commits of those tags (Slicer/Slicer), as in ``../shared/slicer/SOURCE.md``.
COMMITS = {"5.8.1": "11eaf62e5a70b828021ff8beebbdd14d10d4f51c",
           "5.10.0": "a2b6d082be04274a849884fbb1e85634a9df90fb",
           "5.12.3": "9034c71a8fce68ab312458b3d7d16f610562263d"}


def python_name(name: str) -> str:
    """The C++ name of a Python attribute (VTK appends ``_`` to Python keywords: ``None_``)."""
    if name.endswith("_") and keyword.iskeyword(name[:-1]):
        return name[:-1]
    return name


def parse_arities(text: str) -> list[tuple[int, int | None]]:
    """``"0 1-3 2-"`` → ``[(0, 0), (1, 3), (2, None)]`` (see ``cpp_header_facts``)."""
    out: list[tuple[int, int | None]] = []
    for part in text.split():
        lo, sep, hi = part.partition("-")
        out.append((int(lo), int(lo) if not sep else (int(hi) if hi else None)))
    return out


def accepts(arities: list[tuple[int, int | None]], nargs: int | None) -> bool:
    """True when one overload takes ``nargs`` arguments (``None``: unknown, accepted)."""
    return nargs is None or any(lo <= nargs and (hi is None or nargs <= hi) for lo, hi in arities)


@dataclass(frozen=True)
class Lookup:
    """Where a name was found: the defining class, and whether that class is VTK's own."""

    owner: str
    vtk: bool
    arities: tuple[tuple[int, int | None], ...] = ()


class ReleaseApi:
    """The API facts of one Slicer release."""

    def __init__(self, data: dict) -> None:
        self.release = data["source"]["ref"].lstrip("v")
        self.commit: str = data["source"]["commit"]
        self.headers: list[str] = data["headers"]
        self.classes: dict[str, dict] = data["classes"]

    def has_class(self, cls: str) -> bool:
        return cls in self.classes

    def chain(self, cls: str) -> list[str]:
        """``cls`` and its superclasses as far as the facts go, then the first VTK class."""
        out: list[str] = []
        current: str | None = cls
        while current is not None and current not in out:
            out.append(current)
            if current not in self.classes:
                break   # a VTK class: the facts stop here
            current = self.classes[current]["superclass"]
        return out

    def find(self, cls: str, name: str) -> Lookup | None:
        """Method or constant ``name`` of ``cls`` (own or inherited), or ``None``."""
        if cls not in self.classes:
            return None
        cname = python_name(name)
        for owner in self.chain(cls):
            facts = self.classes.get(owner)
            if facts is None:
                return Lookup(owner, True) if vtk_class_has(owner, name) else None
            if name in facts["methods"]:
                return Lookup(owner, False, tuple(parse_arities(facts["methods"][name])))
            if cname in facts["constants"]:
                return Lookup(owner, False)
        return None


@cache
def load(release: str) -> ReleaseApi:
    path = FACTS_DIR / f"slicer-{release}.json"
    return ReleaseApi(json.loads(path.read_text()))


def releases() -> list[ReleaseApi]:
    return [load(r) for r in RELEASES]


@cache
def vtk_class_has(cls: str, name: str) -> bool:
    """True when VTK's class ``cls`` (installed ``vtk``) has attribute ``name``."""
    import vtk

    return hasattr(getattr(vtk, cls, None), name) if hasattr(vtk, cls) else False


# ----------------------------------------------------------------------------------------
# slicer-core's classes
# ----------------------------------------------------------------------------------------
@cache
def slicer_core_classes() -> dict[str, type]:
    """Slicer's own wrapped classes in ``slicer-core`` (not VTK's): ``{name: class}``."""
    import slicer

    out = {}
    for name in dir(slicer):
        cls = getattr(slicer, name)
        module = getattr(cls, "__module__", "") or ""
        if name.startswith("vtk") and isinstance(cls, type) and \
                module.split(".")[0] in ("slicer_core", "vtkAddonPython"):
            out[name] = cls
    return out


def is_slicer_class(cls: type) -> bool:
    """True for a class defined by Slicer (MRML, segmentations, logics, vtkITK, vtkAddon)."""
    module = getattr(cls, "__module__", "") or ""
    return module.split(".")[0] in ("slicer_core", "vtkAddonPython")


@cache
def core_owners() -> dict[str, frozenset[str]]:
    """``{attribute name: Slicer classes of slicer-core defining it themselves}``.

    Only public CamelCase names (methods, enum constants); VTK's generated snake_case
    properties are left out.
    """
    owners: dict[str, set[str]] = {}
    for cname, cls in slicer_core_classes().items():
        for attr in vars(cls):
            if attr[:1].isupper():
                owners.setdefault(attr, set()).add(cname)
    return {k: frozenset(v) for k, v in owners.items()}


# ----------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------
def check_pair(cls: str, name: str, nargs: int | None = None,
               apis: list[ReleaseApi] | None = None) -> list[str]:
    """Problems of calling ``cls.name`` (a class known exactly) in each release; [] if none."""
    problems = []
    for api in apis or releases():
        if not api.has_class(cls):
            problems.append(f"Slicer {api.release}: no class {cls}")
            continue
        found = api.find(cls, name)
        if found is None:
            problems.append(f"Slicer {api.release}: {cls} has no {name} "
                            f"(chain {' > '.join(api.chain(cls))})")
        elif found.arities and not accepts(list(found.arities), nargs):
            problems.append(f"Slicer {api.release}: {found.owner}.{name} takes "
                            f"{_describe(found.arities)} arguments, called with {nargs}")
    return problems


def check_name(name: str, nargs: int | None = None,
               apis: list[ReleaseApi] | None = None) -> list[str]:
    """Problems of ``x.name(...)`` on an object of unknown class.

    Accepted in a release when at least one slicer-core class that defines ``name`` has it
    (own or inherited, with an overload taking ``nargs`` arguments) in that release.
    """
    owners = sorted(core_owners().get(name, ()))
    problems = []
    for api in apis or releases():
        if not any(not check_pair(o, name, nargs, [api]) for o in owners):
            where = ", ".join(owners[:6]) + (" …" if len(owners) > 6 else "")
            problems.append(f"Slicer {api.release}: none of the slicer-core classes defining "
                            f"{name} ({where}) has it"
                            + ("" if nargs is None else f" with {nargs} argument(s)"))
    return problems


def check_class(cls: str, apis: list[ReleaseApi] | None = None) -> list[str]:
    return [f"Slicer {api.release}: no class {cls}" for api in apis or releases()
            if not api.has_class(cls)]


def _describe(arities) -> str:
    return " or ".join(f"{lo}" if lo == hi else f"{lo}..{'' if hi is None else hi}"
                       for lo, hi in arities)
