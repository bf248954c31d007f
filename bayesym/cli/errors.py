"""The CLI's user-error exception: printed as one line, no traceback."""

__all__ = ["CliError"]


class CliError(Exception):
    """A user error of the command line (bad argument, unknown name, unwritable file).

    Args:
        message: One line naming the culprit.
        exit_code: Process exit status (2 for usage errors, 1 for failures of the data).
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
