"""Which packages of a ``requirements.txt`` still need installing or upgrading (stdlib only).

The Slicer module installs them on first use with ``slicer.util.pip_install`` after asking;
torch comes from the PyTorch extension with :data:`TORCH_REQUIREMENT` passed on. This module
must import before anything is installed, so it uses nothing outside the standard library
(versions are compared with a small parser of the ``X.Y.Z`` release numbers, which is all
the requirement files here use).

A package that is already imported in the running Slicer cannot be replaced in memory: after
upgrading it Slicer must restart (:func:`restart_needed`).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from NNSegLib.util.i18n import tr

#: Distribution name (lower case) → import name, where they differ.
IMPORT_NAMES = {"scikit-image": "skimage", "pyyaml": "yaml"}
#: The torch NNSegLib needs (pyproject.toml's floor), handed to PyTorch Utils.
TORCH_REQUIREMENT = "torch>=2.1"

_SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(\[[^\]]*\])?\s*(.*)$")
_OPS = ("~=", "==", "!=", ">=", "<=", ">", "<")


@dataclass(frozen=True)
class Requirement:
    """One requirement line: ``name`` plus ``(operator, version)`` constraints."""

    line: str
    name: str
    constraints: tuple[tuple[str, str], ...]

    @property
    def import_name(self) -> str:
        return IMPORT_NAMES.get(self.name, self.name.replace("-", "_"))

    @property
    def specifier(self) -> str:
        """``>=2.1`` (what PyTorch Utils' ``torchVersionRequirement`` takes)."""
        return ",".join(op + v for op, v in self.constraints)


def parse_requirement(line: str) -> Requirement | None:
    """``"scipy>=1.9,<2  # comment"`` → ``Requirement``; ``None`` for blank/comment lines."""
    text = line.split("#")[0].strip()
    if not text:
        return None
    m = _SPEC.match(text.split(";")[0])
    if not m:
        return None
    constraints = []
    for part in (p.strip() for p in m.group(3).split(",")):
        op = next((o for o in _OPS if part.startswith(o)), None)
        if op:
            constraints.append((op, part[len(op):].strip()))
    return Requirement(text, m.group(1).lower(), tuple(constraints))


def version_tuple(version: str) -> tuple[int, ...]:
    """Release numbers of a version string: ``"2.13.0+cpu"`` → ``(2, 13, 0)``."""
    numbers = []
    for part in re.split(r"[.+\-]", version.strip()):
        m = re.match(r"\d+", part)
        if not m:
            break
        numbers.append(int(m.group()))
    return tuple(numbers)


def satisfies(version: str, constraints: Iterable[tuple[str, str]]) -> bool:
    """Whether ``version`` meets every ``(operator, version)`` constraint."""
    have = version_tuple(version)
    for op, wanted in constraints:
        want = version_tuple(wanted)
        n = max(len(have), len(want))
        a, b = have + (0,) * (n - len(have)), want + (0,) * (n - len(want))
        ok = {"==": a == b, "!=": a != b, ">=": a >= b, "<=": a <= b, ">": a > b,
              "<": a < b}.get(op)
        if op == "~=":
            prefix = want[:-1] if len(want) > 1 else want
            ok = a >= b and have[:len(prefix)] == prefix
        if not ok:
            return False
    return True


def installed_version(name: str) -> str | None:
    """The installed version of a distribution, ``None`` when it is not installed."""
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def unmet_requirements(requirements_path: Path | str, skip: Iterable[str] = (),
                       version_of: Callable[[str], str | None] = installed_version
                       ) -> list[tuple[str, str | None]]:
    """Requirement lines not met: ``(line, installed version or None)`` in file order.

    Args:
        requirements_path: The requirements file.
        skip: Lower-case distribution names never reported (what Slicer ships).
        version_of: Installed version of a distribution (tests pass a stand-in).
    """
    skip = set(skip)
    unmet = []
    for line in Path(requirements_path).read_text().splitlines():
        req = parse_requirement(line)
        if req is None or req.name in skip:
            continue
        version = version_of(req.name)
        if version is None and importlib.util.find_spec(req.import_name) is not None:
            continue  # importable without metadata (e.g. a source checkout): accept it
        if version is None or not satisfies(version, req.constraints):
            unmet.append((req.line, version))
    return unmet


def missing_requirements(requirements_path: Path | str, skip: Iterable[str] = ()) -> list[str]:
    """Requirement lines whose module cannot be imported at all (kept for scripts)."""
    missing = []
    for line in Path(requirements_path).read_text().splitlines():
        req = parse_requirement(line)
        if req is None or req.name in skip:
            continue
        if importlib.util.find_spec(req.import_name) is None:
            missing.append(req.line)
    return missing


def torch_problem(requirement: str = TORCH_REQUIREMENT,
                  version_of: Callable[[str], str | None] = installed_version) -> str | None:
    """Why torch must be installed or upgraded, ``None`` when the installed one is fine."""
    req = parse_requirement(requirement)
    assert req is not None
    version = version_of("torch")
    if version is None:
        return tr("PyTorch is not installed")
    if not satisfies(version, req.constraints):
        return tr("PyTorch {version} is installed; NNSeg needs {needed}",
            version=version, needed=req.specifier)
    return None


def restart_needed(requirements: Iterable[str], modules: Iterable[str] | None = None) -> list[str]:
    """The packages among ``requirements`` already imported in this process.

    Installing a new version of those takes effect only after Slicer restarts.
    """
    loaded = set(sys.modules if modules is None else modules)
    names = []
    for line in requirements:
        req = parse_requirement(line)
        if req is not None and req.import_name in loaded:
            names.append(req.name)
    return names


def install_message(unmet: list[tuple[str, str | None]]) -> str:
    """The question asked before installing: what is missing or too old."""
    lines = []
    for line, version in unmet:
        lines.append(f"  {line}" + (tr(" (installed: {version})", version=version)
                                    if version else ""))
    return "\n".join(lines)


__all__ = ["IMPORT_NAMES", "Requirement", "TORCH_REQUIREMENT", "install_message",
           "installed_version", "missing_requirements", "parse_requirement", "restart_needed",
           "satisfies", "torch_problem", "unmet_requirements", "version_tuple"]
