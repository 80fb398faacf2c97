"""User-facing errors: one root class and the exit codes of the ``nnseg`` command.

Every error a user can fix (bad input, a stage that has not run yet, a wrong option) is an
:class:`NNSegError` or a subclass; the CLI prints it as one line and exits with
:data:`EXIT_BAD_INPUT`. This module imports nothing of the project, so every other module
can import it.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 130


class NNSegError(Exception):
    """An error the user can fix (bad input, missing stage output); shown without traceback."""
