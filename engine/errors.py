"""Errors whose message is written for the person using the app."""


class StudioError(Exception):
    """Base: the message says what is wrong and what is accepted."""


class InputError(StudioError, ValueError):
    """The user's input cannot be used as given."""


class Cancelled(Exception):
    """The caller asked the run to stop (a Stop button, a cancelled API job, a closed page)."""
