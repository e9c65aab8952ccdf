"""The one exception type users see: a one-line message that names the problem and the fix."""


class RobbenchError(Exception):
    """An error caused by the user's input or environment, not by a bug in robbench.

    The CLI prints it as a single line (no traceback) and exits with status 2.
    """
