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
import json
import time
from pathlib import Path
from typing import Any

import torch
from common import command_line, environment, write_json

from bayesym.selectors.compare import CompareConfig, compare
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
    parser.add_argument("--selectors", default="static,marglik,rpp")
    parser.add_argument("--baselines", default="", help="default: every baseline of the space")
    parser.add_argument("--seeds", default=None, help=f"default {DEFAULT['seeds']}")
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--val-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=None, help="default: whole test set")
    parser.add_argument("--budget-epochs", type=float, default=None)
    parser.add_argument("--width", type=int, default=None, help="default: the space's")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="default runs/compare_selectors/<space>")
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> CompareConfig:
    if args.space not in SPACES:
        raise SystemExit(
            f"compare_selectors: the {args.space!r} space is not registered in this checkout "
            f"(registered: {', '.join(SPACES)}); pass --space with one of them"
        )
    sizes = QUICK if args.quick else DEFAULT
    pick = lambda name: sizes[name] if getattr(args, name) is None else getattr(args, name)  # noqa: E731
    return CompareConfig(
        task=args.task,
        space=args.space,
        selectors=tuple(s for s in args.selectors.split(",") if s),
        baselines=tuple(b for b in args.baselines.split(",") if b),
        seeds=tuple(int(s) for s in pick("seeds").split(",")),
        budget_epochs=pick("budget_epochs"),
        train_size=pick("train_size"),
        val_size=pick("val_size"),
        test_size=args.test_size,
        image_size=args.image_size,
        space_options={} if args.width is None else {"width": args.width},
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
    start = time.perf_counter()
    compare(config, out, device=args.device, progress=not args.quiet)
    payload = json.loads((out / "compare.json").read_text())
    result = {
        "command": command_line(__file__, argv),
        "environment": environment(),
        "seconds_this_session": time.perf_counter() - start,
        "out": str(out),
        **payload,
        "acceptance": acceptance(payload),
    }
    path = write_json(f"compare_selectors_{config.space}{suffix}", result)
    print((out / "compare.md").read_text())
    print(json.dumps(result["acceptance"], indent=1))
    print(f"results: {path}\nfigure: {out / 'compare.png'}")
    return result


if __name__ == "__main__":
    main()
