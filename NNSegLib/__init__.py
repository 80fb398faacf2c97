"""NNSegLib: self-configuring U-Net segmentation following the nnU-Net method.

Stages, one module each, each writing a JSON artefact (see ``NNSegLib/README.md``):
``check`` → ``fingerprint`` → ``planner`` → ``preprocess`` → ``train`` →
``find_best`` → ``predict`` → ``evaluate``.
"""

__version__ = "0.1.0"
