"""Fingerprint and plan (METHOD §1-2): ``dataset_fingerprint.json``, the network topology
and memory model, and ``plans.json`` (frozen, versioned dataclasses).

May import ``util`` and ``data``.
"""
