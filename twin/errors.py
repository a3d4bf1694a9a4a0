"""Errors that name a user's mistake; the CLI prints them as one line and exits non-zero."""


class LoraplaceError(Exception):
    """Base class for every error caused by bad input rather than a bug."""


class ConfigError(LoraplaceError):
    """An impossible or inconsistent configuration."""


class InputFileError(LoraplaceError):
    """A malformed or unreadable input file."""


class UnknownProfileError(LoraplaceError):
    """A profile name or path that does not resolve to a profile."""
