"""The one exception type that user-facing code turns into a one-line message."""


class UserError(ValueError):
    """Bad input from the user: the message names the problem and the fix, on one line."""
