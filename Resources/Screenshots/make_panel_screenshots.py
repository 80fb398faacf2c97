"""Regenerate the README's panel pictures:
``python Resources/Screenshots/make_panel_screenshots.py``.

Real Qt 5.15 widgets (PyQt5, offscreen) of NNSeg.ui, with the CTK/qMRML look-alikes and
Slicer 5.12.3's own Python layer of the GUI test harness (``Testing/gui``; needs
``../shared/slicer``). Not screenshots of the Slicer application.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "Testing" / "gui"))

from screens import make_panel_screenshots  # noqa: E402

if __name__ == "__main__":
    for path in make_panel_screenshots(HERE):
        print(path)
