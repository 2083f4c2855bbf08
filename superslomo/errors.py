"""Errors that the CLI turns into one-line messages (torch-free: the runtime uses them too)."""


class SloMoError(Exception):
    """A user-facing failure: bad input, bad file, unsupported option. Exit code 2."""

    exit_code = 2


class CheckFailed(SloMoError):
    """A parity or accuracy gate did not pass. Exit code 1."""

    exit_code = 1


class Interrupted(SloMoError):
    """Ctrl-C: the command stopped and removed what it had half-written. Exit code 130."""

    exit_code = 130
