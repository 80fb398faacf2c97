"""Plumbing every stage shares: errors and exit codes, OS errors in plain words, checked
option values, progress events and cancel, atomic file writes, folder locks, the worker pool,
device, precision and thread choice, and the work-folder layout.

Imports nothing of NNSegLib outside ``util`` (``errors`` imports nothing at all).
"""
