"""The one exception type tinymod raises for a user's mistake (bad settings, bad files).

The command line turns it into a one-line `Error: ...` and a non-zero exit; anything
else that escapes is a bug and keeps its traceback.
"""


class TinymodError(ValueError):
    """A problem with the user's input that they can fix; the message says how."""
