r"""AEN (deep Q-learning over pixel-transformation symmetries) on G-Fashion-MNIST at CPU scale.

Targets A1-A4 of the AEN reproduction (the paper: Basu et al., "Group Equivariant Neural
Architecture Search via Group Decomposition and Reinforcement Learning", Tables 5, 7, 10 and
Fig. 10), per seed on one selection split (training and validation images carved from the
training file, a seeded subset of the test file scored once per network after selection):

* **baselines**: the no-symmetry MLP (``none``, the paper's Eq0) and the 12 single-transformation
  MLPs, each trained ``--baseline-epochs`` epochs exactly as the AEN selector retrains its top
  states (:func:`bayesym.selectors.aen.train_state`);
* **AEN**: the ``aen`` selector with a budget equal to the 13 baselines together
  (``13 x --baseline-epochs`` epochs of training passes): children of ``--child-epochs``,
  the top ``--top-k`` states retrained for ``--baseline-epochs``, the best on validation.

The MLP pins the paper's hidden grid, 20x20 (400 units), for fidelity. On that grid a one-pixel
translation has order 28 on the input but 20 on the hidden units, so every state with a
translation bit has 4-periodic shared weights (the layers warn; ``htranslate`` alone keeps
2,240 of the 11,200 first-layer weights the group allows, Aug4 63 parameters in all); such
states are near-constant networks here as in the paper's Table 3.

The ``acceptance`` block says, each as measured, **held** or **not held**:

* A1 (Aug1, Aug2, Aug4): AEN's test accuracy is not below the best single-transformation MLP
  (the one picked on validation) by more than 2 SE, and exceeds ``none`` by more than 2 SE
  (paired over seeds);
* A2: the mean child validation accuracy of the last epsilon bucket exceeds the epsilon = 1
  bucket's by more than 2 SE (paired over seeds);
* A3: the top-5 states by reward hold no translation bit (every seed);
* A4 (IAug1, rotations only): the rot90 MLP has the highest mean test accuracy of the 13.

Usage::

    python benchmarks/reproduce_aen.py --threads 1            # ~15 CPU-minutes (3 seeds)
    python benchmarks/reproduce_aen.py --quick                # smoke run (~1-2 min)

Writes ``benchmarks/results/reproduce_aen[_quick].json`` after every network (run the same
command again to resume; the AEN searches checkpoint into ``--out``) and the figure
``<out>/aen_search.png`` (child validation accuracy per epsilon bucket; top states).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from common import RESULTS, command_line, environment

from bayesym.groups.pixel_transforms import TRANSFORM_NAMES
from bayesym.layers.shared import PeriodicSharingWarning
from bayesym.selectors import AENConfig, AENSelector, Budget, PixelSpace, selection_split
from bayesym.selectors.aen import train_state
from bayesym.selectors.aen_figure import epsilon_buckets, mean_and_se, plot_aen_search
from bayesym.selectors.aen_figure import top_states as ranked_states
from bayesym.selectors.spaces.pixel import parse_state
from bayesym.selectors.training import evaluate_model

SEARCH_TASKS = ("Aug1", "Aug2", "Aug4")
SINGLE_TASK = "IAug1"
BASELINES = ("none", *TRANSFORM_NAMES)
TRANSLATIONS = ("htranslate", "vtranslate")

DEFAULT = {
    "train_size": 2000, "val_size": 1000, "test_size": 2000, "seeds": "0,1,2",
    "child_epochs": 1.0, "baseline_epochs": 5.0, "top_k": 3,
}  # fmt: skip
QUICK = {
    "train_size": 300, "val_size": 200, "test_size": 300, "seeds": "0,1",
    "child_epochs": 1.0, "baseline_epochs": 1.0, "top_k": 2,
}  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="fmnist", help="fmnist (G-Fashion-MNIST) or digits")
    parser.add_argument("--seeds", default=None)
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--val-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--child-epochs", type=float, default=None)
    parser.add_argument("--baseline-epochs", type=float, default=None)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--hidden", type=int, default=20, help="hidden grid side (paper: 20)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="default runs/reproduce_aen[_quick]")
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else DEFAULT
    for name, value in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.seeds = [int(s) for s in str(args.seeds).split(",")]
    suffix = "_quick" if args.quick else ""
    args.out = Path(args.out or f"runs/reproduce_aen{suffix}")
    args.results = RESULTS / f"reproduce_aen{suffix}.json"
    return args


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """What must match for a results file to be resumed."""
    keys = ("base", "train_size", "val_size", "test_size", "child_epochs", "baseline_epochs",
            "top_k", "hidden")  # fmt: skip
    return {k: getattr(args, k) for k in keys}


def load(args: argparse.Namespace) -> dict[str, Any]:
    if args.results.is_file():
        saved = json.loads(args.results.read_text())
        if saved.get("settings") == settings(args):
            return saved
        raise SystemExit(
            f"{args.results} holds a run with other settings {saved.get('settings')}; move it "
            "away or pass the same options"
        )
    return {"settings": settings(args), "cells": {}}


def save(args: argparse.Namespace, payload: dict[str, Any]) -> None:
    args.results.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.results.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, args.results)


def aen_config(args: argparse.Namespace, seed: int) -> AENConfig:
    return AENConfig(
        child_epochs=args.child_epochs, retrain_epochs=args.baseline_epochs, top_k=args.top_k,
        seed=seed,
    )  # fmt: skip


def run_cell(args, payload, space, task: str, seed: int, search: bool, log) -> None:
    key = f"{task}/seed{seed}"
    cell = payload["cells"].setdefault(key, {"baselines": {}})
    split = selection_split(
        f"aen-{args.base}-{task}", train_size=args.train_size, val_size=args.val_size,
        seed=seed, test_size=args.test_size,
    )  # fmt: skip
    for name in BASELINES:
        if name in cell["baselines"]:
            continue
        start = time.perf_counter()
        model, scores = train_state(space, parse_state(name), split.train, split.valid,
                                    epochs=args.baseline_epochs, seed=seed)  # fmt: skip
        cell["baselines"][name] = {
            "valid": scores["final"], "test": evaluate_model(model, split.test),
            "parameters": scores["parameters"], "seconds": time.perf_counter() - start,
        }  # fmt: skip
        save(args, payload)
        log(f"{key} {name}: test {cell['baselines'][name]['test']['accuracy']:.4f}")
    if not search or "aen" in cell:
        return
    budget = Budget(epochs=len(BASELINES) * args.baseline_epochs)
    result = AENSelector(aen_config(args, seed)).fit(
        split.train, split.valid, space=space, budget=budget, progress=not args.quiet,
        run_dir=args.out / task / f"seed{seed}" / "aen",
    )  # fmt: skip
    cell["aen"] = {
        "choice": result.choices[0].choice, "valid": dict(result.valid),
        "test": evaluate_model(result.model, split.test), "parameters": result.parameters,
        "cost": result.to_json()["cost"], "history": result.to_json()["history"],
    }  # fmt: skip
    save(args, payload)
    log(f"{key} aen: {cell['aen']['choice']} test {cell['aen']['test']['accuracy']:.4f}")


def paired(diffs: list[float]) -> dict[str, Any]:
    mean, se = mean_and_se(diffs)
    return {"per_seed": diffs, "mean": mean, "se": se}


def acceptance(args: argparse.Namespace, payload: dict[str, Any]) -> dict[str, Any]:
    cells = payload["cells"]
    out: dict[str, Any] = {}
    for task in SEARCH_TASKS:
        rows = [cells.get(f"{task}/seed{s}") for s in args.seeds]
        if not all(r and "aen" in r for r in rows):
            continue
        vs_single, vs_none, gain, clean = [], [], [], []
        for row in rows:
            singles = {n: row["baselines"][n] for n in TRANSFORM_NAMES}
            best = max(singles, key=lambda n: singles[n]["valid"]["accuracy"])
            aen_test = row["aen"]["test"]["accuracy"]
            vs_single.append(aen_test - singles[best]["test"]["accuracy"])
            vs_none.append(aen_test - row["baselines"]["none"]["test"]["accuracy"])
            children = [h for h in row["aen"]["history"] if "child" in h]
            buckets = epsilon_buckets([children])
            first, last = buckets.get(1.0, []), buckets[min(buckets)]
            if first and last:
                gain.append(mean_and_se(last)[0] - mean_and_se(first)[0])
            top = ranked_states(children, 5)
            clean.append(not any(t in label.split("+") for label in top for t in TRANSLATIONS))
        a1, none = paired(vs_single), paired(vs_none)
        a2 = paired(gain)
        out[task] = {
            "A1_vs_best_single": {**a1, "held": a1["mean"] >= -2 * a1["se"]},
            "A1_vs_none": {**none, "held": none["mean"] > 2 * none["se"]},
            "A2_last_minus_first_epsilon_bucket": {**a2, "held": a2["mean"] > 2 * a2["se"]},
            "A3_top5_without_translation": {"per_seed": clean, "held": all(clean)},
        }
    rows = [cells.get(f"{SINGLE_TASK}/seed{s}") for s in args.seeds]
    if all(r and len(r["baselines"]) == len(BASELINES) for r in rows):
        means = {
            n: mean_and_se([r["baselines"][n]["test"]["accuracy"] for r in rows]) for n in BASELINES
        }
        best = max(means, key=lambda n: means[n][0])
        out["A4_IAug1"] = {"test_mean_se": means, "best": best, "held": best == "rot90"}
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", PeriodicSharingWarning)  # the paper's grid, on purpose
    log = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    payload = load(args)
    space = PixelSpace(hidden_spatial=(args.hidden, args.hidden))
    start = time.perf_counter()
    for task in (*SEARCH_TASKS, SINGLE_TASK):
        for seed in args.seeds:
            run_cell(args, payload, space, task, seed, task != SINGLE_TASK, log)
    payload["acceptance"] = acceptance(args, payload)
    payload["environment"] = environment()
    payload["command"] = command_line(__file__, argv)
    payload["seconds_this_session"] = time.perf_counter() - start
    save(args, payload)
    runs = {
        task: [payload["cells"][f"{task}/seed{s}"]["aen"]["history"] for s in args.seeds]
        for task in SEARCH_TASKS
    }
    args.out.mkdir(parents=True, exist_ok=True)
    figure = plot_aen_search(runs, args.out / "aen_search.png")
    print(json.dumps(payload["acceptance"], indent=1))
    print(f"wrote {args.results} and {figure}")


if __name__ == "__main__":
    main()
