"""Errors caused by the user's input (files, configs, arguments).

The CLI prints a `UserError` as one line, without a traceback; any other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with what the user gave us: the message names the file or key and says what is wrong."""
