"""Record the (class, method) pairs of Slicer classes that Python code calls, while it runs.

A profile hook (``sys.setprofile`` and ``threading.setprofile``) sees every call of a C
function; VTK's wrapped methods are such functions, bound to their object, so the object's
real class and the method name are known. Only Slicer's classes (slicer-core's own modules)
are kept. Calls made on the class itself (``slicer.vtkX.StaticMethod(...)``) go through a
method descriptor, which the hook does not see: :mod:`mrml_call_scan` finds those in the
sources, where their class is written.

As a pytest plugin (``-p mrml_trace --mrml-trace=OUT.json``) it records during a whole test
run and writes ``{"pairs": [[class, method, calls], ...], "sites": [[file, line, class,
method], ...], "tests": N}``, keeping only calls written in ``--mrml-trace-sources`` (the
library and the module, not the tests).
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any


class Tracer:
    """Counts calls of methods of Slicer classes while installed.

    Args:
        root: The repository; with ``sources``, only calls written in those files or folders
            (relative to ``root``) are kept, each with its place (``sites``).
        sources: E.g. ``("NNSegLib", "NNSeg/NNSeg.py")``: the code a clinician runs, not the
            tests that drive it.
    """

    def __init__(self, root: Path | None = None, sources: tuple[str, ...] = ()) -> None:
        self.pairs: Counter[tuple[str, str]] = Counter()
        #: (file relative to root, line, class, method) → calls
        self.sites: Counter[tuple[str, int, str, str]] = Counter()
        self._slicer_types: dict[type, bool] = {}
        self._root = str(root.resolve()) + "/" if root is not None else None
        self._prefixes = tuple(str((root / s).resolve()) for s in sources) if root else ()
        self._files: dict[str, str | None] = {}

    def _source(self, filename: str) -> str | None:
        """``filename`` relative to the root when it is one of the sources, else ``None``."""
        known = self._files.get(filename, "?")
        if known == "?":
            known = filename[len(self._root):] if self._root and filename.startswith(
                self._prefixes) else None
            self._files[filename] = known
        return known

    def _is_slicer(self, cls: type) -> bool:
        known = self._slicer_types.get(cls)
        if known is None:
            module = getattr(cls, "__module__", "") or ""
            known = module.split(".")[0] in ("slicer_core", "vtkAddonPython")
            self._slicer_types[cls] = known
        return known

    def profile(self, frame: Any, event: str, arg: Any) -> None:
        if event != "c_call":
            return
        owner = getattr(arg, "__self__", None)
        if owner is None:
            return
        cls = owner if isinstance(owner, type) else type(owner)
        if not self._is_slicer(cls):
            return
        if self._prefixes:
            source = self._source(frame.f_code.co_filename)
            if source is None:
                return
            self.sites[(source, frame.f_lineno, cls.__name__, arg.__name__)] += 1
        self.pairs[(cls.__name__, arg.__name__)] += 1

    def __enter__(self) -> Tracer:
        threading.setprofile(self.profile)
        sys.setprofile(self.profile)
        return self

    def __exit__(self, *exc: Any) -> None:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------
# pytest plugin
# ----------------------------------------------------------------------------------------
_state: dict[str, Any] = {}


def pytest_addoption(parser: Any) -> None:
    parser.addoption("--mrml-trace", default=None,
                     help="write the Slicer (class, method) pairs called to this JSON file")
    parser.addoption("--mrml-trace-sources", default="NNSegLib,NNSeg/NNSeg.py,NNSeg/NNSegPanels",
                     help="comma-separated files/folders (relative to the rootdir) whose "
                          "calls are kept")


def pytest_configure(config: Any) -> None:
    out: str | None = config.getoption("--mrml-trace")
    if out:
        sources = tuple(s for s in config.getoption("--mrml-trace-sources").split(",") if s)
        tracer = Tracer(Path(str(config.rootpath)), sources)
        tracer.__enter__()
        _state.update(tracer=tracer, out=Path(out), tests=0)


def pytest_runtest_logreport(report: Any) -> None:
    if _state and report.when == "call" and report.passed:
        _state["tests"] += 1


def pytest_unconfigure(config: Any) -> None:
    tracer: Tracer | None = _state.get("tracer")
    if tracer is None:
        return
    tracer.__exit__(None, None, None)
    pairs = sorted([c, m, n] for (c, m), n in tracer.pairs.items())
    sites = sorted([f, line, c, m] for (f, line, c, m) in tracer.sites)
    _state["out"].write_text(json.dumps(
        {"pairs": pairs, "sites": sites, "tests": _state["tests"]}, indent=0))
