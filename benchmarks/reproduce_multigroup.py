r"""Table 3 of the layer-wise equivariance paper (Sec. 6.3): which group does each layer choose?

Every block of the 8-block backbone is a relaxed F-FC + CONV + GCONV layer over C4 (90-degree
rotations), three paths with three learned prior precisions, in one of two *GCONV variants*:

* ``full``: bayesym's full C4 group convolution (kind ``ffc+conv+gconv``; CONV : GCONV
  parameters 4 : 1, group pooling by the mean);
* ``paper``: the paper's public model, one ordinary convolution shared over the rotated copies
  (kind ``ffc+conv+pgconv``; 16 : 1, group pooling by the maximum).

Data (``--data``), each in three versions (``--datasets``): ``plain``; ``rot90``, every image
turned by a random multiple of 90 degrees (exactly the GCONV path's group); ``rotated``, by a
uniform angle (bilinear, the paper's rotated datasets). ``digits``: the embedded 8x8 digits,
bilinearly upsampled to 14x14 and zero-padded to 16x16 (1200 training, 397 test images); their
orientation-dependent classes (6 / 9) make a rotation-invariant network lose information on
plain digits, but not on turned ones, where the labels are then ambiguous anyway.
``fashion-mnist``: a seeded subset of the training images and the whole test set, turned at
28x28, halved to 14x14, padded to 16x16. Images are standardised with the training statistics.

Schedule: Adam, cosine-annealed learning rate, batch 16; after a burn-in that lets the network
fit first, a hyper step (KFAC GGN, 1-sample MC, on the whole training set; ``hyper_steps``
Adam steps on the log precisions) after *every* epoch, so that the precisions have enough
steps to separate (the paper: ~200 hyper steps).

Per cell (seed x version x variant, marglik): test accuracy, and per block the learned
relative effective parameters of every path, the count-only share (what the relative share
is with equal effective numbers, set by the parameter counts alone), and each path's log10
precision over the block's smallest. A cell whose training accuracy stays below twice chance
has *collapsed*: it is reported, left out of the means, and (``--replace-collapsed``) a
further seed is trained in its place.

Usage::

    python benchmarks/reproduce_multigroup.py --data digits --threads 1 --output table3_digits
    python benchmarks/reproduce_multigroup.py --data digits --quick           # smoke run
    python benchmarks/reproduce_multigroup.py --summary R1.json R2.json --output NAME
    python benchmarks/reproduce_multigroup.py --count-only-agreement benchmarks/results/*.json

Training writes ``results/<output>.json`` after every cell (run directories resume an
interrupted cell; rerunning the command resumes the whole set). ``--summary`` reads any
results files of one data family and schedule and prints the tables and the checks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

from common import RESULTS, environment
from reproduce_quadrants import (
    ROOT,
    CellResult,
    Schedule,
    Setup,
    fashion_mnist_subset,
    names,
    parse_args,
    setup,
    standardised,
    train_cell,
)

from bayesym.data import ImageDataset, d4_transformed, load_digits, resize_and_pad, rotated
from bayesym.report import count_only_shares, log10_precision_ratios

DATA = ("digits", "fashion-mnist")
DATASETS = ("plain", "rot90", "rotated")
VARIANTS: dict[str, tuple[str, str]] = {
    "full": ("ffc+conv+gconv", "gconv"),
    "paper": ("ffc+conv+pgconv", "pgconv"),
}
"""GCONV variant -> (layer kind, name of its group path)."""
SWITCHED_OFF = 2.0
"""A path is switched off when its log10 precision exceeds the block's smallest by this; GCONV
is switched off *against CONV* when ``log10(δ_GCONV / δ_CONV)`` exceeds it (the block keeps
translation equivariance and drops the rotations)."""

DEFAULTS = {
    "digits": Schedule(width=2, epochs=60, batch_size=16, lr=1e-3, burn_in=15, hyper_every=1),
    "fashion-mnist": Schedule(
        width=2, epochs=36, batch_size=16, lr=1e-3, burn_in=10, hyper_every=1
    ),
}
"""Full-run schedules: a hyper step after every epoch past the burn-in (46 and 27 of them)."""
QUICK = Schedule(width=1, epochs=3, batch_size=16, lr=1e-3, burn_in=1, hyper_every=1, hyper_steps=5)
TRAIN_SIZE = {"digits": 1200, "fashion-mnist": 1200}


# ------------------------------------------------------------------------------------ data
def _turned(base: ImageDataset, dataset: str, seed: int) -> ImageDataset:
    if dataset == "rotated":
        return rotated(base, seed)
    if dataset == "rot90":
        return d4_transformed(base, seed, group="C4")
    return base


def multigroup_data(
    dataset: str, train_size: int, test_size: int | None, seed: int, root: str | None = None
) -> tuple[ImageDataset, ImageDataset]:
    """Fashion-MNIST at 16x16, plain or turned at 28x28: ``(train, test)``, standardised."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    splits = []
    for i, (split, n) in enumerate((("train", train_size), ("test", test_size))):
        base = _turned(
            fashion_mnist_subset(split, n, 28, seed, root), dataset, seed * 1000 + 17 + i
        )
        images = resize_and_pad(base.images, 14, interpolation="bilinear", pad=1)
        splits.append(base.replace(images=images))
    train, test = standardised(*splits)
    return train, test


def digits_data(
    dataset: str, train_size: int, test_size: int | None, seed: int
) -> tuple[ImageDataset, ImageDataset]:
    """The embedded digits at 16x16 (upsampled to 14x14, padded), plain or turned there."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    splits = []
    for i, (split, n) in enumerate((("train", train_size), ("test", test_size))):
        base = load_digits(split, size=14, interpolation="bilinear", pad=1)
        if n is not None and n < len(base):
            base = base.subset(list(range(n)))
        splits.append(_turned(base, dataset, seed * 1000 + 17 + i))
    train, test = standardised(*splits)
    return train, test


# ------------------------------------------------------------------------------ analysis
def block_statistics(layers: list[dict[str, Any]], group_path: str) -> list[dict[str, Any]]:
    """Per block layer: learned share, count-only share and log10 precision ratios per path.

    ``gconv_over_conv`` is ``log10(δ_GCONV / δ_CONV)`` and ``gconv_off`` whether it exceeds
    ``SWITCHED_OFF``; ``off`` lists the paths whose precision exceeds the block's smallest by
    more than ``10 ** SWITCHED_OFF``.
    """
    out = []
    for layer in layers:
        paths = layer["paths"]
        names_ = list(paths)
        counts = count_only_shares([paths[p]["numel"] for p in names_])
        ratios = log10_precision_ratios([paths[p]["prior_precision"] for p in names_])
        gconv, conv = paths[group_path]["prior_precision"], paths["conv"]["prior_precision"]
        out.append(
            {
                "relative": {p: paths[p]["relative"] for p in names_},
                "count_only": dict(zip(names_, counts, strict=True)),
                "log10_ratio": dict(zip(names_, ratios, strict=True)),
                "gconv_over_conv": math.log10(gconv / conv),
                "off": [p for p, r in zip(names_, ratios, strict=True) if r > SWITCHED_OFF],
                "gconv_off": math.log10(gconv / conv) > SWITCHED_OFF,
            }
        )
    return out


def collapsed(cell: dict[str, Any], classes: int = 10) -> bool:
    """Training accuracy below twice chance: the network did not train."""
    return cell["train_accuracy"] < 2.0 / classes


def _mean_se(values: list[float]) -> tuple[float, float | None]:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    return mean, se


def _shift(base: list[float], other: list[float]) -> dict[str, Any]:
    """``mean(other) - mean(base)`` with its (Welch) standard error; holds beyond 2 se."""
    if len(base) < 2 or len(other) < 2:
        return {"holds": None, "note": "needs >= 2 trained seeds on both datasets"}
    diff = statistics.fmean(other) - statistics.fmean(base)
    se = math.sqrt(statistics.variance(base) / len(base) + statistics.variance(other) / len(other))
    return {"shift": diff, "standard_error": se, "holds": diff > 2 * se}


def summarise(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (variant, dataset): trained seeds, means, per-block ratios; the issue's checks."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for cell in cells:
        if cell["method"] != "marglik":
            continue
        key = (cell["variant"], cell["task"])
        entry = groups.setdefault(key, {"trained": [], "collapsed": []})
        (entry["collapsed"] if collapsed(cell) else entry["trained"]).append(cell)
    out: dict[str, Any] = {"rows": {}, "checks": {}}
    for (variant, dataset), entry in sorted(groups.items()):
        group_path = VARIANTS[variant][1]
        trained = sorted(entry["trained"], key=lambda c: c["seed"])
        blocks = [block_statistics(c["layers"], group_path) for c in trained]
        shares = [statistics.fmean(b["relative"][group_path] for b in bs) for bs in blocks]
        n_blocks = len(blocks[0]) if blocks else 0
        row = {
            "seeds": [c["seed"] for c in trained],
            "collapsed_seeds": sorted(c["seed"] for c in entry["collapsed"]),
            "test_accuracy": [c["test_accuracy"] for c in trained],
            "gconv_share": shares,
            "count_only": statistics.fmean(b["count_only"][group_path] for b in blocks[0])
            if blocks
            else None,
            "gconv_over_conv": [
                [bs[k]["gconv_over_conv"] for bs in blocks] for k in range(n_blocks)
            ],
            "gconv_off": [sum(bs[k]["gconv_off"] for bs in blocks) for k in range(n_blocks)],
            "last_block_on": [
                "+".join(p for p in bs[-1]["relative"] if p not in bs[-1]["off"]) for bs in blocks
            ],
        }
        out["rows"][f"{variant}/{dataset}"] = row
    for variant in VARIANTS:
        rows = {d: out["rows"].get(f"{variant}/{d}") for d in DATASETS}
        if rows["plain"] is None:
            continue
        checks: dict[str, Any] = {}
        for other in ("rot90", "rotated"):
            if rows[other] is not None:
                checks[f"share_rises_{other}"] = _shift(
                    rows["plain"]["gconv_share"], rows[other]["gconv_share"]
                )
        if rows["rot90"] is not None:
            checks["plain_switches_gconv_off_where_rot90_keeps_it"] = _off_check(
                rows["plain"], rows["rot90"]
            )
        out["checks"][variant] = checks
    return out


def _off_check(plain: dict[str, Any], turned: dict[str, Any]) -> dict[str, Any]:
    """Blocks where GCONV is off against CONV in most plain and under half the rot90 seeds.

    Off against CONV: ``log10(δ_GCONV / δ_CONV) > SWITCHED_OFF``.
    """
    n_plain, n_turned = len(plain["seeds"]), len(turned["seeds"])
    if n_plain == 0 or n_turned == 0:
        return {"holds": None, "note": "no trained seeds"}
    blocks = [
        k + 1
        for k, (p, t) in enumerate(zip(plain["gconv_off"], turned["gconv_off"], strict=True))
        if p > n_plain / 2 and t < n_turned / 2
    ]
    return {
        "blocks": blocks,
        "plain_off": plain["gconv_off"],
        "rot90_off": turned["gconv_off"],
        "holds": bool(blocks),
    }


def markdown(summary: dict[str, Any]) -> str:
    """The reproduction's tables: one row per (variant, dataset), then per-block ratios."""
    lines = [
        "| variant | data | seeds (collapsed) | test acc % | GCONV share % (mean +- se) "
        "| count-only % | GCONV off vs CONV in blocks (seeds) | last block on |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, row in summary["rows"].items():
        variant, dataset = key.split("/")
        if not row["seeds"]:
            lines.append(f"| {variant} | {dataset} | 0 ({row['collapsed_seeds']}) | | | | | |")
            continue
        acc, _ = _mean_se(row["test_accuracy"])
        share, se = _mean_se(row["gconv_share"])
        off = ", ".join(f"b{k + 1}: {n}" for k, n in enumerate(row["gconv_off"]) if n) or "-"
        collapsed_ = f" ({row['collapsed_seeds']})" if row["collapsed_seeds"] else ""
        spread = "-" if se is None else f"{100 * se:.1f}"
        lines.append(
            f"| {variant} | {dataset} | {row['seeds']}{collapsed_} | {100 * acc:.1f} | "
            f"{100 * share:.1f} +- {spread} | {100 * row['count_only']:.1f} | "
            f"{off} | {', '.join(row['last_block_on'])} |"
        )
    n_blocks = max((len(r["gconv_off"]) for r in summary["rows"].values()), default=0)
    lines += [
        "",
        "log10(δ_GCONV / δ_CONV) per block, mean over trained seeds (min, max):",
        "",
        "| variant | data | " + " | ".join(f"b{k + 1}" for k in range(n_blocks)) + " |",
        "|---|---" + "|---" * n_blocks + "|",
    ]
    for key, row in summary["rows"].items():
        if row["seeds"]:
            cells = [
                f"{statistics.fmean(v):+.1f} ({min(v):+.1f}, {max(v):+.1f})"
                for v in row["gconv_over_conv"]
            ]
            lines.append(f"| {key.replace('/', ' | ')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def count_only_agreement(paths: list[str]) -> dict[str, Any]:
    """How far the learned GCONV share is from its count-only share, in any results files.

    Reads the marglik cells of results files of this script, also of its earlier version
    (files that merge others are skipped: their cells are copies), and reports for blocks 1-6
    and 7-8 the median and largest ``|relative - count_only|`` of the group path and the median
    ``|log10(δ_CONV / δ_GCONV)|`` with the number of blocks where it exceeds 1.
    """
    blocks: list[tuple[int, float, float]] = []
    for path in paths:
        part = json.loads(Path(path).read_text())
        if "merged_from" in part:
            continue
        for cell in part.get("cells", []):
            if cell["method"] != "marglik":
                continue
            group_path = next(p for p in cell["layers"][0]["paths"] if p in ("gconv", "pgconv"))
            for k, stats in enumerate(block_statistics(cell["layers"], group_path)):
                gap = abs(stats["relative"][group_path] - stats["count_only"][group_path])
                blocks.append((k, gap, abs(stats["gconv_over_conv"])))
    out: dict[str, Any] = {"cells": len(blocks) // 8 if blocks else 0}
    for label, ks in (("blocks 1-6", range(6)), ("blocks 7-8", range(6, 8))):
        sel = [b for b in blocks if b[0] in ks]
        if sel:
            out[label] = {
                "block_results": len(sel),
                "median_gap": statistics.median(b[1] for b in sel),
                "max_gap": max(b[1] for b in sel),
                "median_abs_log10_ratio": statistics.median(b[2] for b in sel),
                "abs_log10_ratio_above_1": sum(b[2] > 1 for b in sel),
            }
    print(json.dumps(out, indent=1))
    return out


# --------------------------------------------------------------------------------- running
def _write(name: str, payload: dict[str, Any]) -> Path:
    """Write ``results/<name>.json`` atomically (a reader never sees half a file)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)
    return path


def read_cells(paths: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The setting (data, schedule) shared by the results files ``paths``, and all their cells.

    Raises:
        ValueError: if the files differ in data family, image counts or schedule.
    """
    setting, cells = None, []
    for path in paths:
        part = json.loads(Path(path).read_text())
        this = {"data": part["data"], "schedule": part["schedule"]}
        if setting is None:
            setting = this
        elif this != setting:
            raise ValueError(f"{path}: data or schedule differ from {paths[0]}'s; cannot summarise")
        cells.extend(part["cells"])
    seen = set()
    for c in cells:
        key = (c["variant"], c["task"], c["method"], c["seed"])
        if key in seen:
            raise ValueError(f"two cells for {key}; summarise each seed once")
        seen.add(key)
    return setting or {}, cells


def publish(name: str, setting: dict[str, Any], cells: list[dict[str, Any]], wall: float) -> Path:
    """Write the results file with the summary and print the tables and checks."""
    summary = summarise(cells)
    payload = {
        "benchmark": "reproduce_multigroup",
        "description": __doc__.split("\n")[0],
        **setting,
        "wall_seconds": wall,
        "cells": cells,
        "summary": summary,
        "acceptance": summary["checks"],
        "environment": environment(),
    }
    path = _write(name, payload)
    print()
    print(markdown(summary))
    print()
    print(json.dumps(summary["checks"], indent=1))
    print(f"\nwall time {wall / 60:.1f} min; wrote {path}", flush=True)
    return path


def _seed_plan(seeds: list[int], extra: int) -> list[int]:
    return seeds + [max(seeds) + 1 + i for i in range(extra)]


def main(argv: list[str] | None = None) -> dict:
    parser = parse_args(argv, __doc__.split("\n")[0])
    parser.add_argument("--data", choices=DATA, default="digits")
    parser.add_argument("--datasets", default=",".join(DATASETS), help=", ".join(DATASETS))
    parser.add_argument("--variants", default=",".join(VARIANTS), help=", ".join(VARIANTS))
    parser.add_argument("--seeds", default="0,1,2", help="seeds to train (comma-separated)")
    parser.add_argument(
        "--replace-collapsed", type=int, default=2,
        help="at most this many further seeds per (variant, dataset) replace collapsed cells",
    )  # fmt: skip
    parser.add_argument("--run-dir", default=str(ROOT / "runs" / "reproduce_multigroup"))
    parser.add_argument("--summary", nargs="+", metavar="JSON", help="summarise; no training")
    parser.add_argument(
        "--count-only-agreement", nargs="+", metavar="JSON",
        help="learned vs count-only GCONV share in any results files; no training",
    )  # fmt: skip
    parser.set_defaults(methods="marglik")
    args = parser.parse_args(argv)
    if args.count_only_agreement:
        return count_only_agreement(args.count_only_agreement)
    if args.summary:
        setting, cells = read_cells(args.summary)
        publish(args.output or "reproduce_multigroup_summary", setting, cells, 0.0)
        return summarise(cells)
    if args.seed != 0:
        parser.error("use --seeds (a list) with this script")
    datasets, variants = names(args.datasets), names(args.variants)
    unknown = sorted(set(datasets) - set(DATASETS)) + sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(
            f"unknown datasets/variants {unknown}; choose from {DATASETS}, {list(VARIANTS)}"
        )
    seeds = [int(s) for s in names(args.seeds)]
    run = setup(args, DEFAULTS[args.data], QUICK, train_size=TRAIN_SIZE[args.data])
    if args.quick:
        seeds, args.replace_collapsed = seeds[:1], 0
    name = args.output or f"reproduce_multigroup_{args.data}" + ("_quick" if args.quick else "")
    setting = {
        "data": {
            "data": args.data,
            "image_size": 16,
            "train_size": run.train_size,
            "test_size": run.test_size,
        },
        "schedule": {k: v for k, v in dataclasses.asdict(run.schedule).items() if k != "seed"},
    }
    cells = train_cells(args, run, seeds, variants, datasets, name, setting)
    return summarise(cells)


def train_cells(
    args: argparse.Namespace,
    run: Setup,
    seeds: list[int],
    variants: list[str],
    datasets: list[str],
    name: str,
    setting: dict[str, Any],
) -> list[dict[str, Any]]:
    """Train every (variant, dataset, seed) cell; a collapsed seed is replaced by a spare one."""
    start = time.perf_counter()
    cells: list[dict[str, Any]] = []
    pending = {(v, d): list(seeds) for v in variants for d in datasets}
    spare = {key: _seed_plan(seeds, args.replace_collapsed)[len(seeds) :] for key in pending}
    while any(pending.values()):
        for (variant, dataset), queue in pending.items():
            if not queue:
                continue
            seed = queue.pop(0)
            for method in run.methods:
                cell = _train(args, run, variant, dataset, method, seed)
                cells.append(cell)
                if method == "marglik" and collapsed(cell) and spare[variant, dataset]:
                    queue.append(spare[variant, dataset].pop(0))
                publish(name, setting, cells, time.perf_counter() - start)
    return cells


def _train(
    args: argparse.Namespace, run: Setup, variant: str, dataset: str, method: str, seed: int
) -> dict[str, Any]:
    load = digits_data if args.data == "digits" else multigroup_data
    data = load(dataset, run.train_size, run.test_size, seed)
    data_key = {
        "dataset": f"{args.data}/{dataset}",
        "image_size": 16,
        "train_size": run.train_size,
        "test_size": run.test_size,
        "seed": seed,
    }
    kind = VARIANTS[variant][0]
    schedule = dataclasses.replace(run.schedule, seed=seed)
    cell: CellResult = train_cell(
        dataset, variant, kind, method, data, schedule, Path(args.run_dir), data_key,
        layer_options={"group": "C4"}, progress=args.progress, device=run.device,
    )  # fmt: skip
    record = {**dataclasses.asdict(cell), "data": args.data, "variant": variant, "seed": seed}
    record["collapsed"] = collapsed(record)
    group_path = VARIANTS[variant][1]
    blocks = block_statistics(cell.layers, group_path)
    print(
        f"{variant:5s} {dataset:7s} seed {seed} {method}: test acc {100 * cell.test_accuracy:.1f} "
        f"(train {100 * cell.train_accuracy:.1f}) GCONV share "
        + "/".join(f"{100 * b['relative'][group_path]:.0f}" for b in blocks)
        + " lg δG/δC "
        + "/".join(f"{b['gconv_over_conv']:+.1f}" for b in blocks)
        + f" ({cell.seconds:.0f} s)",
        flush=True,
    )
    return record


if __name__ == "__main__":
    main()
