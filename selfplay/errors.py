"""Errors a user can fix; the CLI prints them as one line and exits non-zero. They live in the ground layer so
that every layer (data loading, rendering, engines, orchestration) can raise them."""


class SelfplayError(Exception):
    """A problem with the user's input or environment (not a bug in selfplay)."""


class ConfigError(SelfplayError):
    """A bad config key, type or value; the message names the dotted key path."""


class InputError(SelfplayError):
    """A bad input file or path; the message names the file (and line where there is one)."""
