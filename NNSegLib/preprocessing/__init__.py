"""Preprocessing (METHOD §3): crop to nonzero, normalize, resample, store each case,
and the inverse steps that bring predictions back to the original grid.

May import ``util``, ``data`` and ``planning``.
"""
