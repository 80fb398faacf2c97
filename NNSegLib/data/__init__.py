"""Raw datasets (METHOD §0): image I/O and geometry, ``dataset.json`` and the file
layout, ``nnseg check`` (per case and across cases), the 5-fold splits, the built-in
sample-data generator, and adding a (corrected) case to a dataset (``nnseg add-case``).

May import ``util``.
"""
