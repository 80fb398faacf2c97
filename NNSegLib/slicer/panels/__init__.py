"""The module's panels, one module each, without ``qt``: what a panel shows and allows.

``dataset``, ``plan``, ``train``, ``segment`` and ``review`` (Batch and review, with the
fine-tune) each hold their panel's state (a dataclass built from the parameter node), its
rules (which button is enabled, and why not: the tooltip), the texts that follow its
settings, the locks its running job puts on inputs, and the command lines its buttons run.
``common`` holds what every panel reads: the shared state (running jobs, folders, the chosen
model), :class:`~NNSegLib.slicer.panels.common.Rule` and the folder checks.

Panels import ``common``, ``NNSegLib.slicer.scene``, ``NNSegLib.jobs``, the slicer modules
below them and the stages; never each other. ``NNSegLib.slicer.module_logic`` puts the five
together for the Slicer module.
"""
