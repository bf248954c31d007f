r"""ACE (equality and resilient) against the strict CONV network on the quadrant digits tasks.

Targets C1-C3 of the ACE reproduction, on the translation space (the layer-wise paper's
8-block backbone; ACE's homotopic layer per block is ``conv(x) + γ ffc(x)``):

* **C1** (invariant task ``quadrant-digits``): ACE-equality's equivariant network (every
  ``γ := 0``) is within two standard errors of, or better than, the CONV network trained
  alone, and every final trained ``|γ_i| < 1e-3``;
* **C2** (position task ``quadrant-position-digits``, label = class x quadrant, which no
  translation-invariant network can read): ACE-resilient beats the strict CONV network by
  more than two standard errors, and its largest learned slack ``u_i`` lies in the last two
  blocks;
* **C3** ("misalignment for free"): ACE-equality's mean final ``|λ_i|`` is larger on the
  position task than on the invariant one (paired over seeds, two standard errors); the peak
  and the mean over training of ``|λ_i|`` are reported beside it, since with a prior on the
  unused ``f_neq`` the multiplier can fall back towards 0 once ``γ = 0``.

Every cell runs through :func:`bayesym.selectors.compare.compare` (the harness of
``bayesym compare``): per task and seed one selection split (training and validation images
carved from the training file, the test file apart), the same budget in training image passes
for every selector, the test split scored once per cell. ``--selectors`` may add ``marglik``
and ``rpp`` (the same budget; about 1.3x and 2x a CONV run per epoch): the ``agreement``
block then reports, per task, how often marglik's per-layer choice (F-FC + CONV: ``conv`` or
``ffc``) and ACE-resilient's (``eq`` or ``eq+neq``) agree, ``conv`` matching ``eq``.

Usage::

    python benchmarks/reproduce_ace.py --threads 1          # 3 seeds, ~15 CPU-minutes
    python benchmarks/reproduce_ace.py --quick              # smoke (~1-2 min)

Writes ``benchmarks/results/reproduce_ace[_quick].json`` (both comparisons' ``compare.json``,
``environment()``, the exact command and the ``acceptance`` block); the cells, tables and
figures (``compare.png``, and ``ace_history.png`` per ACE cell) stay in ``--out``
(resumable: run the same command again).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from common import write_json
from comparison import add_comparison_arguments, chosen_sizes, names, record

from bayesym.selectors.compare import CellResult, CompareConfig, compare
from bayesym.selectors.compare_report import paired_difference

ROOT = Path(__file__).resolve().parent.parent

TASKS = {"invariant": "quadrant-digits", "position": "quadrant-position-digits"}
"""The two tasks of the reproduction (role -> registered task)."""

DEFAULT = {"train_size": 1000, "val_size": 300, "budget_epochs": 20.0, "seeds": "0,1,2"}
QUICK = {"train_size": 96, "val_size": 48, "budget_epochs": 2.0, "seeds": "0,1"}
GAMMA_TOLERANCE = 1e-3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_comparison_arguments(
        parser,
        default=DEFAULT,
        selectors="ace-eq,ace-resilient",
        baselines="conv",
        baselines_help="static baselines (cells of their own)",
        out_help="default runs/reproduce_ace[_quick]",
    )
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace, task: str) -> CompareConfig:
    sizes, width = chosen_sizes(args, DEFAULT, QUICK)
    return CompareConfig(
        task=task,
        space="translation",
        selectors=names(args.selectors),
        baselines=names(args.baselines),
        **sizes,
        space_options={} if width is None else {"width": width},
    )


def _scores(results: Sequence[CellResult], selector: str, key: str) -> dict[int, dict[str, float]]:
    """Seed -> {layer: score ``key``} of ``selector``'s cells."""
    return {
        r.seed: {c.layer: float(c.scores[key]) for c in r.selection.choices}
        for r in results
        if r.cell.selector == selector and r.cell.baseline is None
    }


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return mean, se


def _verdict(mean: float, se: float) -> str:
    if math.isnan(se):
        return "one seed: no claim"
    if abs(mean) > 2 * se:
        return "higher" if mean > 0 else "lower"
    return "within 2 SE"


def acceptance(
    payloads: Mapping[str, Mapping[str, Any]], results: Mapping[str, Sequence[CellResult]]
) -> dict[str, Any]:
    """C1-C3 from the two comparisons, each stated as measured, held or not."""
    out: dict[str, Any] = {
        "rule": "a mean difference over seeds is called only beyond 2 standard errors of the "
        "paired differences"
    }
    labels = {r["selector"] for r in payloads["invariant"]["rows"]}
    if {"ace-eq", "static:conv"} <= labels:
        diff = paired_difference(payloads["invariant"]["rows"], "ace-eq", "static:conv")
        gammas = _scores(results["invariant"], "ace-eq", "abs_gamma")
        largest = max((g for seed in gammas.values() for g in seed.values()), default=math.nan)
        out["C1"] = {
            "statement": "invariant task: ACE-eq's gamma := 0 network within 2 SE of (or "
            f"better than) CONV, every final |gamma| < {GAMMA_TOLERANCE:g}",
            "difference_vs_conv": diff,
            "largest_final_abs_gamma": largest,
            "held": diff.get("verdict") in ("higher", "within 2 SE") and largest < GAMMA_TOLERANCE,
        }
    labels = {r["selector"] for r in payloads["position"]["rows"]}
    if {"ace-resilient", "static:conv"} <= labels:
        diff = paired_difference(payloads["position"]["rows"], "ace-resilient", "static:conv")
        slacks = _scores(results["position"], "ace-resilient", "u")
        layers = list(next(iter(slacks.values())))
        mean_u = {layer: statistics.fmean(s[layer] for s in slacks.values()) for layer in layers}
        top = max(mean_u, key=mean_u.__getitem__)
        out["C2"] = {
            "statement": "position task: ACE-resilient beats CONV beyond 2 SE, the largest "
            "mean slack u in the last two blocks",
            "difference_vs_conv": diff,
            "mean_final_u": mean_u,
            "largest_u_layer": top,
            "held": diff.get("verdict") == "higher" and top in layers[-2:],
        }
    out["C3"] = _misalignment(results)
    return out


def _lambda_summaries(cells: Sequence[CellResult], selector: str) -> dict[str, dict[int, float]]:
    """Per seed, the mean over layers of |λ| at the end, its peak and its mean over epochs."""
    out: dict[str, dict[int, float]] = {"final": {}, "peak": {}, "mean_over_training": {}}
    for r in cells:
        if r.cell.selector != selector or not r.selection.history:
            continue
        history = [h["lambda"] for h in r.selection.history]
        layers = list(history[-1])
        out["final"][r.seed] = statistics.fmean(abs(history[-1][k]) for k in layers)
        out["peak"][r.seed] = statistics.fmean(max(abs(h[k]) for h in history) for k in layers)
        out["mean_over_training"][r.seed] = statistics.fmean(
            statistics.fmean(abs(h[k]) for h in history) for k in layers
        )
    return out


def _misalignment(results: Mapping[str, Sequence[CellResult]]) -> dict[str, Any]:
    """Mean |λ| per task and selector; C3 is judged on ACE-eq's final |λ|, paired over seeds.

    Besides the final value, the peak and the mean over training are reported: with a prior
    on f_neq's weights, the equality problem's multiplier can fall back to 0 once γ = 0 (the
    unused f_neq decays, so the loss stops depending on γ), so the final |λ| may understate
    what the constraint cost along the way.
    """
    summaries = {
        sel: {role: _lambda_summaries(cells, sel) for role, cells in results.items()}
        for sel in ("ace-eq", "ace-resilient")
    }
    out: dict[str, Any] = {
        "statement": "ACE-eq's mean final |lambda| is larger on the position task than on "
        "the invariant one",
        "mean_abs_lambda": {
            sel: {
                role: {kind: statistics.fmean(v.values()) for kind, v in s.items() if v}
                for role, s in roles.items()
            }
            for sel, roles in summaries.items()
        },
    }
    for kind in ("final", "peak", "mean_over_training"):
        eq = {role: s[kind] for role, s in summaries["ace-eq"].items()}
        seeds = sorted(set(eq.get("invariant", {})) & set(eq.get("position", {})))
        if not seeds:
            continue
        mean, se = _mean_se([eq["position"][s] - eq["invariant"][s] for s in seeds])
        out[f"difference_position_minus_invariant_{kind}"] = {
            "mean": mean,
            "se": se,
            "seeds": len(seeds),
            "verdict": _verdict(mean, se),
        }
        if kind == "final":
            out["held"] = _verdict(mean, se) == "higher"
    return out


def agreement(results: Mapping[str, Sequence[CellResult]]) -> dict[str, Any]:
    """Per task, the share of (seed, layer) where marglik and ACE-resilient agree."""
    out: dict[str, Any] = {}
    for role, cells in results.items():
        words = {
            sel: {
                r.seed: {c.layer: c.choice for c in r.selection.choices}
                for r in cells
                if r.cell.selector == sel
            }
            for sel in ("marglik", "ace-resilient")
        }
        marglik, ace = words["marglik"], words["ace-resilient"]
        pairs = [
            (marglik[s][layer] == "conv") == (ace[s][layer] == "eq")
            for s in sorted(set(marglik) & set(ace))
            for layer in ace[s]
            if layer in marglik[s]
        ]
        if pairs:
            out[role] = {"agreeing": sum(pairs), "of": len(pairs), "share": sum(pairs) / len(pairs)}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    suffix = "_quick" if args.quick else ""
    out = Path(args.out or ROOT / "runs" / f"reproduce_ace{suffix}")
    start = time.perf_counter()
    payloads, results = {}, {}
    for role, task in TASKS.items():
        config = build_config(args, task)
        results[role] = compare(config, out / role, device=args.device, progress=not args.quiet)
        payloads[role] = json.loads((out / role / "compare.json").read_text())
    result = {
        **record(__file__, argv, start, out),
        "tasks": dict(TASKS),
        **{role: payloads[role] for role in TASKS},
        "acceptance": acceptance(payloads, results),
        "agreement_marglik_ace_resilient": agreement(results),
    }
    path = write_json(f"reproduce_ace{suffix}", result)
    for role in TASKS:
        print(f"## {role}: {TASKS[role]}\n")
        print((out / role / "compare.md").read_text())
    print(json.dumps(result["acceptance"], indent=1))
    print(json.dumps(result["agreement_marglik_ace_resilient"], indent=1))
    print(f"results: {path}")
    return result


if __name__ == "__main__":
    main()
