"""Which packages of a ``requirements.txt`` cannot be imported yet (standard library only).

The Slicer module installs them on first use with ``slicer.util.pip_install``; this module
must import before they are installed, so it uses nothing outside the standard library.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Iterable

#: Distribution name (lower case) → import name, where they differ.
IMPORT_NAMES = {"scikit-image": "skimage", "pyyaml": "yaml"}


def missing_requirements(requirements_path: Path | str, skip: Iterable[str] = ()) -> list[str]:
    """Requirement lines of ``requirements.txt`` whose module cannot be imported.

    Args:
        requirements_path: The requirements file (``#`` comments and blank lines ignored).
        skip: Lower-case distribution names never reported (what Slicer ships).

    Returns:
        The lines as written (e.g. ``"scipy>=1.9"``), in file order.
    """
    skip = set(skip)
    missing = []
    for line in Path(requirements_path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        name = line.split(">")[0].split("=")[0].split("<")[0].strip().lower()
        if name in skip:
            continue  # never reinstall what Slicer ships
        if importlib.util.find_spec(IMPORT_NAMES.get(name, name)) is None:
            missing.append(line)
    return missing


__all__ = ["IMPORT_NAMES", "missing_requirements"]
