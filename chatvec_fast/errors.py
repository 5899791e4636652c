"""Exceptions. Every message names what, where, expected vs got, and the fix."""


class ChatvecError(Exception):
    """Base class: an error the user can act on (the CLI prints it without a traceback)."""


class InputError(ChatvecError):
    """An input checkpoint is missing, malformed or inconsistent."""


class PlanError(ChatvecError):
    """The three checkpoints cannot be paired under the chosen policies."""


class OutputError(ChatvecError):
    """The output path is unusable, or writing it failed."""
