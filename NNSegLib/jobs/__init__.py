"""Jobs: running ``nnseg`` commands without blocking the GUI (imports only ``NNSegLib.util``).

``base`` (the :class:`~NNSegLib.jobs.base.Job` protocol, status, events), ``process`` (a job
in a child process, and a chain of them), ``runner`` + ``detached`` (a job whose state lives
in files and can outlive Slicer), ``sequence`` (jobs run as phases of one job) and ``board``
(the Slicer module's running jobs, one per panel).
"""
