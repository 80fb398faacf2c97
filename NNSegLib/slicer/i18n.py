"""Translation of the texts NNSegLib.slicer shows in the Slicer module.

Slicer translates a module's strings with ``slicer.i18n.tr`` (and the ``.ui`` file through
Qt). The library cannot import ``slicer`` outside :mod:`NNSegLib.slicer.mrml`, so the module
hands its translation function over once with :func:`set_translator`; until then (headless,
tests, Slicer versions without ``slicer.i18n``) :func:`tr` returns the text unchanged.

Write translatable texts as ``tr("… {name} …").format(name=value)`` — never an f-string
inside ``tr`` — so the text looked up is the same whatever the values.
"""

from __future__ import annotations

from typing import Callable

_translator: Callable[[str], str] | None = None


def set_translator(translate: Callable[[str], str] | None) -> None:
    """Use ``translate`` (e.g. ``slicer.i18n.tr``) for :func:`tr`; ``None`` switches it off."""
    global _translator
    _translator = translate


def tr(text: str) -> str:
    """``text`` in the user's language when a translator is set, else unchanged."""
    if _translator is None:
        return text
    try:
        return str(_translator(text))
    except Exception:  # a broken translation must never break the module
        return text


__all__ = ["set_translator", "tr"]
