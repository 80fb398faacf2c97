"""Plumbing every stage shares: errors and exit codes, progress events and cancel, atomic
file writes, the worker pool, device and thread choice, and the work-folder layout.

Imports nothing of NNSegLib outside ``util`` (``errors`` imports nothing at all).
"""
