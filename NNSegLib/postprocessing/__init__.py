"""Connected-component postprocessing and the choice of configuration (METHOD §6):
applying rules (used by inference) and choosing them on cross-validation
(``nnseg find-best``).

May import ``util``, ``data``, ``planning``, ``preprocessing``, ``network`` and
``evaluation``.
"""
