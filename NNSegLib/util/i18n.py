"""Translation of the texts NNSegLib.slicer shows in the Slicer module.

Slicer translates a module's strings with ``slicer.i18n.tr`` (and the ``.ui`` file through
Qt). The library cannot import ``slicer`` outside :mod:`NNSegLib.slicer.scene.mrml`, so the module
hands its translation function over once with :func:`set_translator`; until then (headless,
tests, Slicer versions without ``slicer.i18n``) :func:`tr` returns the text unchanged.

Write translatable texts as ``tr("… {name} …", name=value)`` — never an f-string
inside ``tr`` — so the text looked up is the same whatever the values.
"""

from __future__ import annotations

from typing import Any, Callable

_translator: Callable[[str], str] | None = None


def set_translator(translate: Callable[[str], str] | None) -> None:
    """Use ``translate`` (e.g. ``slicer.i18n.tr``) for :func:`tr`; ``None`` switches it off."""
    global _translator
    _translator = translate


def tr(text: str, **values: Any) -> str:
    """``text`` in the user's language when a translator is set, else unchanged.

    ``values`` fill the text's ``{name}`` fields. A translation whose fields do not match
    (a translator's typo) falls back to the original text instead of raising.
    """
    translated = text
    if _translator is not None:
        try:
            translated = str(_translator(text))
        except Exception:  # a broken translation must never break the module
            translated = text
    if not values:
        return translated
    try:
        return translated.format(**values)
    except (KeyError, IndexError, ValueError):
        return text.format(**values)


__all__ = ["set_translator", "tr"]
