r"""``bayesym compare``: run selectors side by side on one task, space, split and budget.

Usage::

    bayesym compare --task digits --space translation --selectors static,marglik,rpp \
        --seeds 0,1 --budget-epochs 10 --out runs/compare/digits [--baselines conv,fc] \
        [--train-size 1000] [--val-size 300] [--width 2] [--threads 1] [--quiet] \
        [--executor ray [--ray-address HOST:PORT] [--ray-cpus N]]

Every option is checked before any work: an unknown task, space, selector or baseline, a
selector that does not support the space, or a non-positive size is refused in one line that
lists the valid choices. Running the command again on the same ``--out`` skips the finished
cells and resumes an unfinished one from its checkpoint (:mod:`bayesym.selectors.compare`).
``--executor ray`` trains the independent candidates as Ray tasks
(:class:`~bayesym.selectors.ray_executor.RayExecutor`, one CPU and one torch thread each) on
a local Ray instance of ``--ray-cpus`` CPUs, or on the cluster at ``--ray-address``; the
tables are those of the serial executor, and either executor resumes the other's run.
The outputs are ``compare.md`` (printed at the end), ``compare.csv``, ``compare.json`` and
``compare.png``.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

import torch

from bayesym.cli.errors import CliError
from bayesym.cli.options import (
    ConfigOption,
    add_config_options,
    add_session_options,
    option_values,
    set_threads,
)
from bayesym.runs import resolve_device
from bayesym.selectors.compare import CompareConfig, compare
from bayesym.selectors.executor import CandidateExecutor, SerialExecutor
from bayesym.selectors.registry import SELECTORS, SPACES

__all__ = ["COMPARE_OPTIONS", "register"]

COMPARE_OPTIONS: tuple[ConfigOption, ...] = (
    ConfigOption(
        "--budget-epochs",
        "budget_epochs",
        "budget of every selector in training image passes / training images",
        unset="each selector's own schedule",
    ),
    ConfigOption("--train-size", "train_size", "training images"),
    ConfigOption("--val-size", "val_size", "validation images"),
    ConfigOption("--test-size", "test_size", "seeded test subset", unset="all of the test split"),
    ConfigOption("--image-size", "image_size", "resize images to N x N", unset="as they are"),
    ConfigOption("--root", "root", "Fashion-MNIST directory", unset="$BAYESYM_DATA or Debian's"),
)
"""The options that set a :class:`CompareConfig` field as they are (type and default from it)."""

_FLAGS = {f"CompareConfig.{o.path}": o.flag for o in COMPARE_OPTIONS} | {
    "CompareConfig.seeds": "--seeds"
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
            space_options=space_options,
            **option_values(args, COMPARE_OPTIONS),
        )
    except ValueError as err:
        raise CliError(_as_flags(str(err))) from None


def _executor(args: argparse.Namespace, device: torch.device) -> CandidateExecutor:
    """The candidate executor of ``--executor`` (checked before any work)."""
    if args.executor == "serial":
        if args.ray_address is not None or args.ray_cpus is not None:
            raise CliError("--ray-address and --ray-cpus need --executor ray")
        return SerialExecutor()
    if importlib.util.find_spec("ray") is None:
        raise CliError('--executor ray needs Ray: pip install "bayesym[ray]"')
    from bayesym.selectors.ray_executor import RayExecutor

    if args.ray_cpus is not None and (args.ray_address is not None or args.ray_cpus < 1):
        raise CliError(
            f"--ray-cpus must be >= 1 (got {args.ray_cpus}) and sets a local Ray instance's "
            "CPUs; a cluster at --ray-address has its own"
        )
    gpus = 1.0 if device.type == "cuda" else 0.0  # one GPU per candidate
    return RayExecutor(args.ray_address, num_cpus=args.ray_cpus, gpus_per_task=gpus)


def _compare(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    try:
        device = resolve_device(args.device)
    except ValueError as err:
        raise CliError(str(err)) from None
    executor = _executor(args, device)
    set_threads(args.threads)
    out = Path(args.out)
    try:
        compare(config, out, device=device, progress=not args.quiet, executor=executor)
    except ValueError as err:
        raise CliError(str(err)) from None
    finally:
        close = getattr(executor, "close", None)  # a Ray instance started here is shut down
        if close is not None:
            close()
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
    add_config_options(parser, COMPARE_OPTIONS, CompareConfig)
    parser.add_argument("--width", type=int, default=None, help="width of the space's networks")
    parser.add_argument("--out", required=True, help="output directory (resumed if it exists)")
    add_session_options(parser, quiet_help="no progress bars or cell lines")
    parser.add_argument(
        "--executor",
        choices=("serial", "ray"),
        default="serial",
        help="how independent candidates are trained: serially here (default) or as Ray tasks",
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        help="with --executor ray: a running Ray cluster (e.g. auto, HOST:6379, "
        "ray://HOST:10001; default: start a local instance)",
    )
    parser.add_argument(
        "--ray-cpus",
        type=int,
        default=None,
        help="with --executor ray: CPUs of the local instance (default: all)",
    )
    parser.set_defaults(handler=_compare)
