"""The one error type for problems a user must fix, and the exit codes tasks map it to."""

from __future__ import annotations

EXIT_FAILURE = 1  # a build, push or verification failed
EXIT_USAGE = 2  # bad settings, flags or input: fix and re-run
EXIT_ACCESS = 3  # the registry could not be reached, or refused the credentials (verify tells it from MISMATCH)


class PublisherError(Exception):
    """A problem the user must fix, carrying a one-line message and an exit code.

    Anything else that escapes a task is a bug and may show a traceback.
    """

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class ConfigError(PublisherError):
    """A setting, flag or input file is invalid (exit code 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


class AccessError(PublisherError):
    """The registry could not be reached, kept failing, or refused access: nothing was learnt about content."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_ACCESS)
