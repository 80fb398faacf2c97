"""The API facts of ``../shared/slicer/api_facts.json``: what PythonQt exposes of each class.

``shared/slicer`` holds Slicer's own Python layer, its tests, the C++ of the CTK and qMRML
widgets and these facts, extracted from the sources (see its SOURCE.md). A user's clone has
no ``../shared``: :data:`SHARED` is then ``None`` and the GUI tests skip.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
_SHARED = REPO.parent / "shared" / "slicer"
SHARED: Path | None = _SHARED if (_SHARED / "api_facts.json").is_file() else None

#: The Slicer releases every GUI test runs against: the oldest supported and the current.
VERSIONS = ("5.10.0", "5.12.3")

#: PythonQt's own decorators on every QObject (PythonQtStdDecorators.h in commontk/PythonQt):
#: callable on CTK/qMRML objects too, although they are not in the classes' meta-objects.
STD_DECORATORS = frozenset({
    "connect", "disconnect", "parent", "setParent", "findChild", "findChildren",
    "setProperty", "property", "tr", "metaObject", "children", "className", "inherits",
    "emit", "dynamicPropertyNames", "blockSignals", "signalsBlocked", "deleteLater",
})


def normalize(signature: str) -> str:
    """Qt's normalized signature: no spaces, no ``const`` and no references."""
    sig = re.sub(r"\bconst\s+", "", signature.strip())
    sig = sig.replace("&", "")
    return re.sub(r"\s+", "", sig)


def split_signature(signature: str) -> tuple[str, tuple[str, ...]]:
    name, _, rest = normalize(signature).partition("(")
    args = rest.rstrip(")")
    return name, tuple(a for a in args.split(",") if a) if args else ()


@dataclass
class ClassFacts:
    """What PythonQt lets Python use of one class, its bases included."""

    name: str
    qt_class: bool  # a Qt class (PythonQt wraps its public methods too)
    properties: set[str] = field(default_factory=set)
    signals: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)
    slots: set[str] = field(default_factory=set)  # slots and Q_INVOKABLEs, by name
    slot_signatures: set[str] = field(default_factory=set)
    wrapped: set[str] = field(default_factory=set)  # PythonQt-generated wrappers (Qt classes)
    chain: list[str] = field(default_factory=list)

    @property
    def callables(self) -> set[str]:
        return self.slots | self.wrapped | STD_DECORATORS

    def has_signal(self, signature: str) -> bool:
        name, args = split_signature(signature)
        return args in self.signals.get(name, [])


@lru_cache(maxsize=1)
def raw_facts() -> dict:
    if SHARED is None:
        raise FileNotFoundError("../shared/slicer/api_facts.json is not here")
    return json.loads((SHARED / "api_facts.json").read_text())


def _own(entry: dict, version: str) -> dict:
    """One class's own lists, with what was added in 5.12.3 only for 5.12.3."""
    own = {key: list(entry.get(key, [])) for key in ("properties", "signals", "slots",
                                                      "invokables")}
    if version >= "5.12.3":
        for key, values in entry.get("added_in_5_12_3", {}).items():
            own.setdefault(key, []).extend(values)
    return own


@cache
def class_facts(name: str, version: str = VERSIONS[-1]) -> ClassFacts:
    facts = raw_facts()
    chain, current = [], name
    while current:
        chain.append(current)
        current = facts[current].get("base")
    result = ClassFacts(name, qt_class=name.startswith("Q"), chain=chain)
    for cls in chain:
        entry = facts[cls]
        own = _own(entry, version)
        result.properties |= set(own["properties"])
        for sig in own["signals"]:
            sname, args = split_signature(sig)
            result.signals.setdefault(sname, []).append(args)
        for sig in own["slots"] + own["invokables"]:
            result.slots.add(split_signature(sig)[0])
            result.slot_signatures.add(normalize(sig))
        result.wrapped |= {m for m in entry.get("pythonqt_wrapped_methods", [])
                           if m != "<ctor>"}
        result.wrapped |= {split_signature(d.replace("static ", ""))[0]
                           for d in entry.get("pythonqt_decorators", [])}
    return result


def known(name: str) -> bool:
    return SHARED is not None and name in raw_facts() and not name.startswith("_")
