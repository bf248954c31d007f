"""The command line and the record every selector-comparison script shares.

``compare_selectors.py``, ``reproduce_equinas.py`` and ``reproduce_ace.py`` run
:func:`bayesym.selectors.compare.compare` over data sizes, seeds and a budget that default to
the script's own values (smaller ones under ``--quick``), and record the run the same way.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from common import command_line, environment, write_json

from bayesym.selectors.compare import CompareConfig, compare

SIZE_OPTIONS = ("seeds", "train_size", "val_size", "test_size", "budget_epochs", "width")
"""Options whose default is the script's (``DEFAULT``, or ``QUICK`` under ``--quick``)."""


def add_comparison_arguments(
    parser: argparse.ArgumentParser,
    *,
    default: Mapping[str, Any],
    selectors: str,
    baselines: str,
    baselines_help: str = "static baselines (comma-separated)",
    width_help: str = "default: the space's",
    out_help: str,
) -> None:
    """Selectors, baselines, :data:`SIZE_OPTIONS` and the session options."""
    parser.add_argument("--selectors", default=selectors, help="comma-separated")
    parser.add_argument("--baselines", default=baselines, help=baselines_help)
    parser.add_argument("--seeds", default=None, help=f"default {default['seeds']}")
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--val-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=None, help="default: whole test set")
    parser.add_argument("--budget-epochs", type=float, default=None)
    parser.add_argument("--width", type=int, default=None, help=width_help)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help=out_help)
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--quiet", action="store_true")


def chosen_sizes(
    args: argparse.Namespace, default: Mapping[str, Any], quick: Mapping[str, Any]
) -> tuple[dict[str, Any], int | None]:
    """Each of :data:`SIZE_OPTIONS` as given, else the script's default.

    Returns:
        The :class:`~bayesym.selectors.compare.CompareConfig` fields among them (seeds as a
        tuple), and the network width (``None``: the space's).
    """
    sizes = quick if args.quick else default
    chosen = {
        name: sizes.get(name) if getattr(args, name) is None else getattr(args, name)
        for name in SIZE_OPTIONS
    }
    chosen["seeds"] = tuple(int(s) for s in str(chosen["seeds"]).split(","))
    width = chosen.pop("width")
    return chosen, width


def names(text: str) -> tuple[str, ...]:
    """``"a,b,"`` -> ``("a", "b")``."""
    return tuple(name for name in text.split(",") if name)


def record(script: str, argv: list[str] | None, start: float, out: Path) -> dict[str, Any]:
    """How, where and on what a comparison ran (the head of its results JSON)."""
    return {
        "command": command_line(script, argv),
        "environment": environment(),
        "seconds_this_session": time.perf_counter() - start,
        "out": str(out),
    }


def compare_and_record(
    config: CompareConfig,
    out: Path,
    args: argparse.Namespace,
    *,
    script: str,
    argv: list[str] | None,
    name: str,
    acceptance: Callable[[dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    """Run the comparison, write ``results/<name>.json`` and print its table and checks."""
    start = time.perf_counter()
    compare(config, out, device=args.device, progress=not args.quiet)
    payload = json.loads((out / "compare.json").read_text())
    result = {**record(script, argv, start, out), **payload, "acceptance": acceptance(payload)}
    path = write_json(name, result)
    print((out / "compare.md").read_text())
    print(json.dumps(result["acceptance"], indent=1))
    print(f"results: {path}\nfigure: {out / 'compare.png'}")
    return result
