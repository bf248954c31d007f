r"""EquiNAS on rotated Fashion-MNIST: static C1/C4/D4 baselines and EquiNAS_E at equal budgets.

Runs :func:`bayesym.selectors.compare.compare` (the harness of ``bayesym compare``) on
``rotated-fmnist`` halved to 14x14 and zero-padded to 16x16, in the ``d4`` space (the EquiNAS
network, width 4, depth 8, kernel 3; ``--norm none`` by default, ``--norm group_batch`` for the
paper's normalised backbone): per seed one selection split (training and validation images
from the training file, the test file apart), every static baseline and every selector with
the same budget in training image passes (``--protocol equal``, default), the test split
scored once per cell. ``--protocol paper`` is the EquiNAS paper's instead: EquiNAS_E runs
``--generations`` generations whatever they cost, and every baseline trains as many epochs as
EquiNAS_E's final individual saw along its lineage. Every cell
trains with Adam (lr ``--lr``, batch ``--batch-size``), so the comparison is one of search,
not of optimisers; ``--paper-optimizer`` gives EquiNAS_E the paper's SGD (lr 0.1, batch 64),
which needs the normalised backbone. ``--selectors`` adds any registered selector of the
``d4`` space (e.g. ``equinas-d``, ``marglik``, ``rpp``; the last two need ``--norm none``).

The ``acceptance`` block states, as measured, the EquiNAS paper's Table-1 claims at this scale
(targets E1 of the design notes):

* E1a: the C1 baseline's test accuracy is below the D4 and the C4 baselines' by more than two
  standard errors of the paired differences over seeds;
* E1b: each selector is within two standard errors of the best static baseline (or above it)
  and above C1;
* E1c: EquiNAS_E's final population keeps a mostly-D4 individual (at least half its blocks
  D4), and its best individual's lineage relaxes a block of the second half first;
* E2: a "prior" baseline (``--prior-baselines``, default ``C1-prior-D4``: the all-D4 network
  relaxed to C1 before training) is not below the same group trained from scratch;

and which selector reaches the best test accuracy at the common budget, with its wall time.

Usage::

    python benchmarks/reproduce_equinas.py --threads 1          # ~15 CPU-minutes
    python benchmarks/reproduce_equinas.py --protocol paper --threads 1
    python benchmarks/reproduce_equinas.py --quick              # smoke (~1 min)

Writes ``benchmarks/results/reproduce_equinas[_<norm>][_paper][_finish<E>][_quick].json``
(the comparison's ``compare.json`` plus ``environment()``, the exact command and the
acceptance block); the cells, tables, the comparison figure and every EquiNAS_E lineage figure
(``seed*/equinas-e/lineage.png``) stay in ``--out`` (resumable: run the same command again).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch
from comparison import add_comparison_arguments, chosen_sizes, compare_and_record, names
from equinas_d_claims import mixture_claims

from bayesym.selectors.compare import CompareConfig
from bayesym.selectors.compare_report import paired_difference
from bayesym.selectors.equinas_lineage import lineage

ROOT = Path(__file__).resolve().parent.parent

DEFAULT = {
    "train_size": 2000,
    "val_size": 500,
    "budget_epochs": 12.0,
    "seeds": "0,1,2",
    "width": 4,
    "test_size": None,
}
QUICK = {
    "train_size": 200,
    "val_size": 100,
    "budget_epochs": 2.0,
    "seeds": "0,1",
    "width": 1,
    "test_size": 500,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="rotated-fmnist")
    parser.add_argument("--image-size", type=int, default=16)
    add_comparison_arguments(
        parser,
        default=DEFAULT,
        selectors="static,equinas-e",
        baselines="C1,C4,D4",
        width_help="default 4 (quick: 1)",
        out_help="default runs/reproduce_equinas/run<suffix>",
    )
    parser.add_argument(
        "--prior-baselines",
        default="C1-prior-D4",
        help="extra baselines 'H-prior-G' (the all-G network relaxed to H before training)",
    )
    parser.add_argument("--norm", default="none", choices=("none", "group_batch"))
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam lr of every cell")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--population", type=int, default=3, help="EquiNAS_E's P")
    parser.add_argument("--fraction", type=float, default=0.25, help="EquiNAS_E's f (epochs)")
    parser.add_argument("--moves", default="any", choices=("any", "reference"))
    parser.add_argument(
        "--protocol",
        default="equal",
        choices=("equal", "paper"),
        help="equal: one pass budget for every cell; paper: EquiNAS_E runs --generations and "
        "every other cell trains the epochs of EquiNAS_E's lineage, (generations + 1) * f",
    )
    parser.add_argument("--generations", type=int, default=10, help="EquiNAS_E (paper protocol)")
    parser.add_argument(
        "--finish-epochs",
        type=float,
        default=0.0,
        help="EquiNAS_E variant: epochs kept back to train the best individual further",
    )
    parser.add_argument(
        "--paper-optimizer",
        action="store_true",
        help="EquiNAS_E with the paper's SGD (lr 0.1, batch 64; needs --norm group_batch)",
    )
    return parser.parse_args(argv)


def selector_options(args: argparse.Namespace, selectors: tuple[str, ...]) -> dict[str, dict]:
    """The same Adam schedule for every trained cell; EquiNAS_E's search settings."""
    training = {"training.lr": args.lr, "training.batch_size": args.batch_size}
    if args.protocol == "paper":
        lineage_epochs = (args.generations + 1) * args.fraction + args.finish_epochs
        training["training.epochs"] = max(1, math.ceil(lineage_epochs - 1e-9))
    options: dict[str, dict] = {}
    for name in selectors:
        if name in ("static", "marglik", "rpp"):
            options[name] = dict(training)
    if "equinas-e" in selectors:
        optimizer = (
            {"optimizer.name": "sgd", "optimizer.lr": 0.1, "optimizer.batch_size": 64}
            if args.paper_optimizer
            else {"optimizer.name": "adam", "optimizer.lr": args.lr,
                  "optimizer.batch_size": args.batch_size}
        )  # fmt: skip
        options["equinas-e"] = {
            "population": args.population,
            "fraction": args.fraction,
            "moves": args.moves,
            "finish_epochs": args.finish_epochs,
            **optimizer,
        }
        if args.protocol == "paper":
            options["equinas-e"]["generations"] = args.generations
    if "equinas-d" in selectors:  # the architecture lr stays the paper's 0.01
        options["equinas-d"] = (
            {} if args.paper_optimizer else {"weight_lr": args.lr, "batch_size": args.batch_size}
        )
    return options


def build_config(args: argparse.Namespace) -> CompareConfig:
    sizes, width = chosen_sizes(args, DEFAULT, QUICK)
    if args.protocol != "equal":  # every cell trains the lineage's epochs instead
        sizes["budget_epochs"] = None
    selectors = names(args.selectors)
    priors = names(args.prior_baselines)
    return CompareConfig(
        task=args.task,
        space="d4",
        selectors=selectors,
        baselines=names(args.baselines) + priors,
        **sizes,
        image_size=args.image_size,
        space_options={"width": width, "norm": args.norm, "prior_baselines": priors},
        selector_options=selector_options(args, selectors),
    )


def _verdict(difference: dict[str, Any], wanted: tuple[str, ...]) -> dict[str, Any]:
    return {**difference, "held": difference.get("verdict") in wanted}


def lineage_claims(out: Path, seeds: tuple[int, ...]) -> list[dict[str, Any]]:
    """E1c per seed, from EquiNAS_E's saved history."""
    claims = []
    for seed in seeds:
        path = out / f"seed{seed}" / "equinas-e" / "selection.json"
        if not path.is_file():
            continue
        history = json.loads(path.read_text())["history"]
        population = history[-1]["population"]
        depth = len(population[0]["groups"])
        mostly_d4 = any(sum(g == "D4" for g in r["groups"]) * 2 >= depth for r in population)
        line = lineage(history)
        first_move = next((r["moves"][0] for r in line if r["moves"]), None)
        claims.append(
            {
                "seed": seed,
                "generations": history[-1]["generation"],
                "final_population": ["/".join(r["groups"]) for r in population],
                "best_lineage": ["/".join(r["groups"]) for r in line],
                "mostly_d4_individual_kept": mostly_d4,
                "first_relaxed_block": None if first_move is None else first_move[0],
                "relaxation_starts_in_second_half": first_move is not None
                and first_move[0] >= depth // 2,
            }
        )
    return claims


def acceptance(payload: dict[str, Any], out: Path, seeds: tuple[int, ...]) -> dict[str, Any]:
    """E1a-c as measured (module docstring), and the best selector at the common budget."""
    table, summary = payload["rows"], payload["summary"]
    labels = {s["selector"] for s in summary}
    baselines = [s for s in summary if s["selector"].startswith("static:")]
    best = max(baselines, key=lambda s: s["test_accuracy"])["selector"] if baselines else None
    e1a = [
        _verdict(paired_difference(table, "static:C1", ref), ("lower",))
        for ref in ("static:D4", "static:C4")
        if {"static:C1", ref} <= labels
    ]
    e1b = []
    for s in summary:
        label = s["selector"]
        if label.startswith("static"):
            continue
        if best is not None:
            e1b.append(_verdict(paired_difference(table, label, best), ("within 2 SE", "higher")))
        if "static:C1" in labels and best != "static:C1":
            e1b.append(_verdict(paired_difference(table, label, "static:C1"), ("higher",)))
    e2 = []
    for label in sorted(labels):
        if label.startswith("static:") and "-prior-" in label:
            scratch = "static:" + label.split(":")[1].split("-prior-")[0]
            if scratch in labels:
                difference = paired_difference(table, label, scratch)
                e2.append(_verdict(difference, ("higher", "within 2 SE")))
    ranking = sorted(summary, key=lambda s: -s["test_accuracy"])
    return {
        "rule": "a mean test-accuracy difference over seeds is called only beyond 2 standard "
        "errors of the paired differences",
        "best_static_baseline_on_test": best,
        "E1a_C1_below_D4_and_C4": e1a,
        "E1b_selectors_vs_best_baseline_and_C1": e1b,
        "E1c_equinas_e_lineage": lineage_claims(out, seeds),
        "E2_prior_baselines_not_below_scratch": e2,
        "E3_equinas_d_mixture": mixture_claims(out, seeds) if "equinas-d" in labels else [],
        "ranking_at_equal_budget": [
            {
                "selector": s["selector"],
                "test_accuracy": s["test_accuracy"],
                "test_accuracy_se": s["test_accuracy_se"],
                "epochs": s["epochs"],
                "wall_seconds": s["wall_seconds"],
            }
            for s in ranking
        ],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    config = build_config(args)
    torch.set_num_threads(args.threads)
    suffix = "".join(
        (
            "" if args.task == "rotated-fmnist" else f"_{args.task}",
            "" if args.norm == "none" else f"_{args.norm}",
            "" if args.protocol == "equal" else f"_{args.protocol}",
            f"_finish{args.finish_epochs:g}" if args.finish_epochs else "",
            "_quick" if args.quick else "",
        )
    )
    out = Path(args.out or ROOT / "runs" / "reproduce_equinas" / f"run{suffix}")
    return compare_and_record(
        config,
        out,
        args,
        script=__file__,
        argv=argv,
        name=f"reproduce_equinas{suffix}",
        acceptance=lambda payload: acceptance(payload, out, config.seeds),
    )


if __name__ == "__main__":
    main()
