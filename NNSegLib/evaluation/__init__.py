"""Comparing label maps with references (METHOD §7): Dice and friends per case and
class, ``summary.json``, CSV and the HTML report. It sits low because training (fold
validation) and postprocessing (choosing rules) measure with it.

May import ``util`` and ``data`` (and anything below ``network``, which it does not need).
"""
