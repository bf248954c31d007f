r"""Static baselines, the marglik and RPP selectors side by side on rotated Fashion-MNIST.

Runs :func:`bayesym.selectors.compare.compare` (the harness of ``bayesym compare``) on
``rotated-fmnist`` halved to 14x14 and zero-padded to 16x16: per seed one selection split
(training and validation images carved from the training file, the whole test file apart),
every selector and every static baseline of the space with the same budget in training image
passes, the test split scored once per cell. The defaults (``--space d4``: the D4-subgroup
space of the EquiNAS network, norm-free, as the prior-based selectors need) fall back with a
clear error when that space is not registered in this checkout; ``--space translation`` runs
the layer-wise paper's 8-block backbone (static CONV, F-FC and FC; marglik on F-FC + CONV; RPP
on CONV + FC).

The ``acceptance`` block compares every selector with the static row (the baseline picked on
validation) and with the best static baseline, paired over seeds: a difference is called only
when the mean over seeds exceeds two standard errors.

Usage::

    python benchmarks/compare_selectors.py --space translation --threads 1   # ~35-45 min
    python benchmarks/compare_selectors.py --space translation --quick       # smoke (~2 min)

Writes ``benchmarks/results/compare_selectors_<space>[_quick].json`` (the comparison's
``compare.json`` plus ``environment()``, the exact command and the acceptance block); the
cells, tables and figure stay in ``--out`` (resumable: run the same command again).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from comparison import add_comparison_arguments, chosen_sizes, compare_and_record, names

from bayesym.selectors.compare import CompareConfig
from bayesym.selectors.compare_report import paired_difference
from bayesym.selectors.registry import SPACES

ROOT = Path(__file__).resolve().parent.parent

DEFAULT = {"train_size": 2000, "val_size": 500, "budget_epochs": 15.0, "seeds": "0,1,2"}
QUICK = {"train_size": 200, "val_size": 100, "budget_epochs": 2.0, "seeds": "0,1"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--space", default="d4", help="search space (default d4)")
    parser.add_argument("--task", default="rotated-fmnist")
    parser.add_argument("--image-size", type=int, default=16)
    add_comparison_arguments(
        parser,
        default=DEFAULT,
        selectors="static,marglik,rpp",
        baselines="",
        baselines_help="default: every baseline of the space",
        out_help="default runs/compare_selectors/<space>",
    )
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> CompareConfig:
    if args.space not in SPACES:
        raise SystemExit(
            f"compare_selectors: the {args.space!r} space is not registered in this checkout "
            f"(registered: {', '.join(SPACES)}); pass --space with one of them"
        )
    sizes, width = chosen_sizes(args, DEFAULT, QUICK)
    return CompareConfig(
        task=args.task,
        space=args.space,
        selectors=names(args.selectors),
        baselines=names(args.baselines),
        **sizes,
        image_size=args.image_size,
        space_options={} if width is None else {"width": width},
    )


def acceptance(payload: dict[str, Any]) -> dict[str, Any]:
    """Every selector against the static pick and the best baseline, paired over seeds."""
    table = payload["rows"]
    summary = payload["summary"]
    baselines = [s for s in summary if s["selector"].startswith("static:")]
    best = max(baselines, key=lambda s: s["test_accuracy"])["selector"] if baselines else None
    references = [r for r in ("static", best) if r is not None]
    selectors = [s["selector"] for s in summary if not s["selector"].startswith("static")]
    return {
        "rule": "a mean test-accuracy difference over seeds is called only beyond 2 standard "
        "errors of the paired differences",
        "best_static_baseline_on_test": best,
        "comparisons": [
            paired_difference(table, label, reference)
            for label in selectors
            for reference in references
        ],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    config = build_config(args)
    torch.set_num_threads(args.threads)
    suffix = "_quick" if args.quick else ""
    out = Path(args.out or ROOT / "runs" / "compare_selectors" / f"{config.space}{suffix}")
    return compare_and_record(
        config,
        out,
        args,
        script=__file__,
        argv=argv,
        name=f"compare_selectors_{config.space}{suffix}",
        acceptance=acceptance,
    )


if __name__ == "__main__":
    main()
