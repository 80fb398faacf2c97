"""Segment names → standard codes and colours, from a small table of our own.

A segmentation that carries a DICOM/SNOMED terminology can be exported as DICOM SEG
without a person re-coding every segment. Slicer's full terminology files are not
available headless, so NNSeg maps common label names to SNOMED CT codes itself. Names
that are not in the table keep no terminology and get a colour from :data:`PALETTE`.

Matching ignores case, spaces, ``-``/``_`` and a ``left``/``right`` prefix or suffix
(``"Left kidney"``, ``"kidney_L"``), which becomes a laterality modifier.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ANATOMY = ("SCT", "123037004", "Anatomical Structure")
ALTERED = ("SCT", "49755003", "Morphologically Altered Structure")
LEFT = ("SCT", "7771000", "Left")
RIGHT = ("SCT", "24028007", "Right")

#: Terminology context name used in serialized entries (Slicer's general anatomy list).
CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"

#: Distinct colours (RGB 0..1) for labels without a table entry, by label value 1, 2, ...
PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.90, 0.30, 0.25),
    (0.25, 0.55, 0.90),
    (0.35, 0.75, 0.35),
    (0.95, 0.75, 0.20),
    (0.65, 0.40, 0.80),
    (0.20, 0.80, 0.80),
    (0.95, 0.50, 0.70),
    (0.60, 0.45, 0.25),
    (0.55, 0.85, 0.20),
    (0.15, 0.35, 0.60),
    (0.90, 0.55, 0.15),
    (0.50, 0.50, 0.50),
)


@dataclass(frozen=True)
class Term:
    """A coded segment type.

    Attributes:
        category: Category code, e.g. anatomical structure.
        type: Type code, e.g. ``("SCT", "10200004", "Liver")``.
        colour: Suggested display colour (RGB 0..1).
        modifier: Laterality or other type modifier, ``None`` if none.
    """

    category: tuple[str, str, str]
    type: tuple[str, str, str]
    colour: tuple[float, float, float]
    modifier: tuple[str, str, str] | None = None

    def serialize(self, context: str = CONTEXT) -> str:
        """Slicer's serialized terminology string (``segment.SetTerminology(...)``)."""

        def code(c: tuple[str, str, str] | None) -> str:
            return "^".join(c) if c else "^^"

        return "~".join([context, code(self.category), code(self.type), code(self.modifier),
                         "", "^^", "^^"])


def _t(value: str, meaning: str, colour: tuple[float, float, float],
       category: tuple[str, str, str] = ANATOMY) -> Term:
    return Term(category, ("SCT", value, meaning), colour)


# Our own small table: normalized name → term. Colours chosen for contrast, not copied.
TABLE: dict[str, Term] = {
    "liver": _t("10200004", "Liver", (0.80, 0.45, 0.35)),
    "spleen": _t("78961009", "Spleen", (0.55, 0.25, 0.45)),
    "kidney": _t("64033007", "Kidney", (0.70, 0.35, 0.30)),
    "pancreas": _t("15776009", "Pancreas", (0.95, 0.80, 0.55)),
    "heart": _t("80891009", "Heart", (0.85, 0.25, 0.25)),
    "lung": _t("39607008", "Lung", (0.75, 0.85, 0.95)),
    "brain": _t("12738006", "Brain", (0.90, 0.80, 0.75)),
    "prostate": _t("41216001", "Prostate", (0.85, 0.65, 0.50)),
    "urinarybladder": _t("89837001", "Urinary bladder", (0.85, 0.80, 0.40)),
    "stomach": _t("69695003", "Stomach", (0.90, 0.65, 0.55)),
    "aorta": _t("15825003", "Aorta", (0.90, 0.15, 0.15)),
    "gallbladder": _t("28231008", "Gallbladder", (0.40, 0.65, 0.30)),
    "esophagus": _t("32849002", "Esophagus", (0.80, 0.60, 0.50)),
    "spinalcord": _t("2748008", "Spinal cord", (0.95, 0.90, 0.55)),
    "thyroidgland": _t("69748006", "Thyroid gland", (0.75, 0.45, 0.55)),
    "adrenalgland": _t("23451007", "Adrenal gland", (0.85, 0.70, 0.30)),
    "colon": _t("71854001", "Colon", (0.80, 0.60, 0.40)),
    "duodenum": _t("38848004", "Duodenum", (0.85, 0.70, 0.55)),
    "trachea": _t("44567001", "Trachea", (0.70, 0.85, 0.90)),
    "bone": _t("272673000", "Bone", (0.95, 0.93, 0.85)),
    "tumor": _t("108369006", "Neoplasm", (0.95, 0.60, 0.10), ALTERED),
}
SYNONYMS = {
    "bladder": "urinarybladder",
    "oesophagus": "esophagus",
    "thyroid": "thyroidgland",
    "adrenal": "adrenalgland",
    "tumour": "tumor",
    "neoplasm": "tumor",
    "lesion": "tumor",
    "kidneys": "kidney",
    "lungs": "lung",
}

_SIDE = re.compile(r"^(left|right|l|r)(?=[^a-z]|$)|(?<=[^a-z])(left|right|l|r)$")


def normalize(name: str) -> str:
    """Lower case without spaces, ``-`` and ``_`` (``"Spinal-Cord "`` → ``"spinalcord"``)."""
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


def lookup(name: str) -> Term | None:
    """The term for a label name, with laterality when the name has a side; else ``None``."""
    text = name.strip().lower()
    side = None
    m = _SIDE.search(text)
    if m:
        word = m.group(1) or m.group(2)
        side = LEFT if word.startswith("l") else RIGHT
        text = (text[: m.start()] + text[m.end():]).strip(" _-")
    key = normalize(text)
    key = SYNONYMS.get(key, key)
    term = TABLE.get(key)
    if term is None:
        return None
    if side is not None:
        return Term(term.category, term.type, term.colour, side)
    return term


def label_colour(value: int, name: str | None = None) -> tuple[float, float, float]:
    """Colour for a label: the table's colour when the name matches, else the palette's."""
    if name:
        term = lookup(name)
        if term is not None:
            return term.colour
    if value <= 0:
        return (0.0, 0.0, 0.0)
    return PALETTE[(value - 1) % len(PALETTE)]


def distinct_colours(label_names: dict[int, str]) -> dict[int, tuple[float, float, float]]:
    """Colours for every foreground label; palette colours are never used twice in a row.

    Table colours win for known names; other labels take palette colours in label order,
    skipping any that equal an already assigned colour.
    """
    out: dict[int, tuple[float, float, float]] = {}
    used = set()
    for value in sorted(v for v in label_names if v > 0):
        term = lookup(label_names[value])
        if term is not None and term.colour not in used:
            out[value] = term.colour
            used.add(term.colour)
    i = 0
    for value in sorted(v for v in label_names if v > 0):
        if value in out:
            continue
        while PALETTE[i % len(PALETTE)] in used and i < 2 * len(PALETTE):
            i += 1
        out[value] = PALETTE[i % len(PALETTE)]
        used.add(out[value])
        i += 1
    return out
