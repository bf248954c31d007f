"""The ``bayesym`` command line (console script ``bayesym = "bayesym.cli:main"``).

Subcommands register themselves: each module under :mod:`bayesym.cli` exposes
``register(subparsers)``, which adds its parser and sets a ``handler(args) -> int``
default; :data:`SUBCOMMANDS` lists those functions. The commands are ``data``, ``fit``,
``report``, ``demo`` (:mod:`bayesym.cli.fit`) and ``compare`` (:mod:`bayesym.cli.compare`);
adding one means adding one module and one entry there.

User errors (bad arguments, unknown task names, missing data files) are printed as one
line ``bayesym: error: ...`` on stderr with a non-zero exit status and no traceback:
2 for usage errors (including unknown task names), 1 when the data cannot be read or a file
cannot be written, 130 after Ctrl-C (``bayesym: interrupted; ...``). Warnings are one line
``bayesym: warning: ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import NoReturn

from bayesym import __version__
from bayesym.cli import compare, data, fit
from bayesym.cli.errors import CliError
from bayesym.data.errors import DataError, UnknownTaskError

__all__ = ["SUBCOMMANDS", "CliError", "build_parser", "main"]

Register = Callable[["argparse._SubParsersAction[_Parser]"], None]
"""Adds one subcommand to the subparsers of :func:`build_parser` (whose parsers are ``_Parser``)."""

SUBCOMMANDS: tuple[Register, ...] = (data.register, fit.register, compare.register)
"""One ``register(subparsers)`` per subcommand module, in the order shown by ``--help``."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors become :class:`CliError` (one line, exit code 2)."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{self.prog}: {message} (see `{self.prog} --help`)", exit_code=2)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = _Parser(
        prog="bayesym",
        description="Bayesian symmetry selection for PyTorch.",
    )
    parser.add_argument("--version", action="version", version=f"bayesym {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in SUBCOMMANDS:
        register(subparsers)
    parser.set_defaults(handler=lambda args: _usage(parser))
    return parser


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    # io.UnsupportedOperation (a ValueError) when stdout has no file descriptor.
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """Print a warning as one line (no file name, line number or source)."""
    print(f"bayesym: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status instead of exiting.

    Args:
        argv: Arguments without the program name (``None``: ``sys.argv[1:]``).

    Returns:
        0 on success, 2 for usage errors, 1 when data cannot be read or a file cannot be
        written, 130 when interrupted.
    """
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        warnings.filterwarnings("default", category=UserWarning, module=r"bayesym\b")
        code, message = _main(argv)
    if message is not None:
        prefix = "bayesym: " if code == INTERRUPTED else "bayesym: error: "
        print(f"{prefix}{message}", file=sys.stderr)
    return code


INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT, as a shell reports it)."""


def _main(argv: Sequence[str] | None) -> tuple[int, str | None]:
    """The exit status and the one line to print (``None``: nothing)."""
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
        return int(args.handler(args)), None
    except SystemExit as stop:  # --help and --version exit through argparse
        return (stop.code if isinstance(stop.code, int) else 0), None
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        _silence_stdout()
        return 0, None
    except CliError as err:
        return err.exit_code, str(err)
    except UnknownTaskError as err:
        return 2, str(err)
    except DataError as err:
        return 1, str(err)
    except KeyboardInterrupt:  # before a run started (a run says where to resume)
        return INTERRUPTED, "interrupted"
