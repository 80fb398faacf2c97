"""``python -m NNSegLib …`` is the same as the ``nnseg`` command (used by the Slicer module)."""

from NNSegLib.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
