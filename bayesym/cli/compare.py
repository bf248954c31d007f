r"""``bayesym compare``: run selectors side by side on one task, space, split and budget.

Usage::

    bayesym compare --task digits --space translation --selectors static,marglik,rpp \
        --seeds 0,1 --budget-epochs 10 --out runs/compare/digits [--baselines conv,fc] \
        [--train-size 1000] [--val-size 300] [--width 2] [--threads 1] [--quiet]

Every option is checked before any work: an unknown task, space, selector or baseline, a
selector that does not support the space, or a non-positive size is refused in one line that
lists the valid choices. Running the command again on the same ``--out`` skips the finished
cells and resumes an unfinished one from its checkpoint (:mod:`bayesym.selectors.compare`).
The outputs are ``compare.md`` (printed at the end), ``compare.csv``, ``compare.json`` and
``compare.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bayesym.cli.errors import CliError
from bayesym.cli.options import DEFAULT_THREADS, set_threads
from bayesym.runs import resolve_device
from bayesym.selectors.compare import CompareConfig, compare
from bayesym.selectors.registry import SELECTORS, SPACES

__all__ = ["register"]

_FLAGS = {
    f"CompareConfig.{name}": f"--{name.replace('_', '-')}"
    for name in ("train_size", "val_size", "test_size", "image_size", "seeds", "budget_epochs")
}
"""Configuration fields as the command line names them (for one-line errors)."""


def _as_flags(message: str) -> str:
    for field, flag in _FLAGS.items():
        message = message.replace(field, flag)
    return message


def _names(text: str, flag: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if len(set(names)) != len(names):
        raise CliError(f"{flag} lists a name twice: {text!r}")
    return names


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise CliError(
            f"--seeds must be comma-separated non-negative integers (e.g. 0,1,2), got {text!r}"
        ) from None
    return seeds


def config_from_args(args: argparse.Namespace) -> CompareConfig:
    """The :class:`CompareConfig` of the parsed options.

    Raises:
        CliError: naming the bad option and the valid choices.
    """
    space_options: dict[str, Any] = {}
    if args.width is not None:
        space_options["width"] = args.width
    try:
        return CompareConfig(
            task=args.task,
            space=args.space,
            selectors=_names(args.selectors, "--selectors"),
            baselines=_names(args.baselines, "--baselines"),
            seeds=_seeds(args.seeds),
            budget_epochs=args.budget_epochs,
            train_size=args.train_size,
            val_size=args.val_size,
            test_size=args.test_size,
            image_size=args.image_size,
            space_options=space_options,
            root=None if args.root is None else str(args.root),
        )
    except ValueError as err:
        raise CliError(_as_flags(str(err))) from None


def _compare(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    try:
        device = resolve_device(args.device)
    except ValueError as err:
        raise CliError(str(err)) from None
    set_threads(args.threads)
    out = Path(args.out)
    try:
        compare(config, out, device=device, progress=not args.quiet)
    except ValueError as err:
        raise CliError(str(err)) from None
    print((out / "compare.md").read_text())
    print(f"tables: {out / 'compare.md'}, {out / 'compare.csv'}, {out / 'compare.json'}")
    print(f"figure: {out / 'compare.png'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``compare``."""
    parser = subparsers.add_parser(
        "compare",
        help="compare symmetry selectors on one task, split and budget",
        description=(
            "Run every selector (and static baseline) on the same selection split per seed and "
            "the same budget, score each selected model once on the test split, and write "
            "compare.md/.csv/.json/.png into --out (re-running resumes)."
        ),
    )
    parser.add_argument("--task", required=True, help="task (`bayesym data list` shows them)")
    parser.add_argument("--space", required=True, help=f"search space, one of: {', '.join(SPACES)}")
    parser.add_argument(
        "--selectors",
        required=True,
        help=f"comma-separated selectors, any of: {', '.join(SELECTORS)}",
    )
    parser.add_argument(
        "--baselines",
        default="",
        help="comma-separated static baselines of the space, each a row of its own "
        "(default: all of the space's when static is among the selectors)",
    )
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    parser.add_argument(
        "--budget-epochs",
        type=float,
        default=None,
        help="budget of every selector in training image passes / training images "
        "(default: each selector's own schedule)",
    )
    parser.add_argument("--train-size", type=int, default=1000, help="training images (1000)")
    parser.add_argument("--val-size", type=int, default=300, help="validation images (300)")
    parser.add_argument(
        "--test-size", type=int, default=None, help="seeded test subset (default: all)"
    )
    parser.add_argument(
        "--image-size", type=int, default=None, help="resize images to N x N (default: as is)"
    )
    parser.add_argument("--width", type=int, default=None, help="width of the space's networks")
    parser.add_argument("--root", type=Path, default=None, help="Fashion-MNIST directory")
    parser.add_argument("--out", required=True, help="output directory (resumed if it exists)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or cell lines")
    parser.add_argument(
        "--device", default="cpu", help="where to train: cpu (default), cuda or cuda:N"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"torch intra-op threads (default: {DEFAULT_THREADS}, fast on a machine whose "
        "cores other processes share; more can pay for wide networks on idle cores)",
    )
    parser.set_defaults(handler=_compare)
