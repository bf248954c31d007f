"""Table 1 of the layer-wise equivariance paper (Sec. 6.1) at CPU scale on Fashion-MNIST.

The quadrant task: every (downscaled) Fashion-MNIST image is placed in one of the four
quadrants of a zero canvas twice its size. Two label sets on the *same* images:

* ``invariant``: label = class (10 classes), a translation-invariant task;
* ``position``: label = ``class * 4 + quadrant`` (40 classes), which no translation-invariant
  network can solve (it cannot tell the quadrants apart: at most 1/4 of its class accuracy).

Models: the paper's 8-block backbone (:mod:`bayesym.backbones.layerwise`) with every block an
FC layer, a CONV layer (circular padding, polyphase subsampling: exactly invariant to cyclic
shifts, and a quadrant change is one), or the relaxed F-FC + CONV layer whose symmetry is
learned. Each model is trained by MAP (fixed unit prior precision, App. F.6) and with the
Laplace marginal likelihood (:class:`~bayesym.marglik.MarglikTrainer` learns one prior
precision per layer path), with the same seed, data and schedule in every cell.

After training, every cell is evaluated the same way: test accuracy and NLL on the whole
quadrant-placed Fashion-MNIST test set, and the Laplace log marginal likelihood per datum with
the 1-sample MC KFAC GGN on the training set at the final parameters and the final prior
(learned for marglik cells, the unit prior for MAP cells), with the effective number of
parameters per layer path (App. D.2).

Scale (see docs/reproductions.md): images 8x8 (28x28 downscaled by area averaging),
canvas 16x16, width ``a = 4`` (the paper: MNIST 28x28 on a 56x56 canvas, ``a = 10``), a seeded
training subset of 3000 images, 30 epochs instead of 1000. The FC model then has 3.4 M
parameters; at the paper's scale it would have billions.

Usage::

    python benchmarks/reproduce_quadrants.py            # default (~35-45 min on a CPU)
    python benchmarks/reproduce_quadrants.py --quick    # smoke run (~1-2 min)

Writes ``benchmarks/results/reproduce_quadrants[_quick].json`` and prints markdown tables. Run
directories (checkpoints, histories; an interrupted run resumes) go under ``--run-dir``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from common import environment, write_json

from bayesym.data import (
    ImageDataset,
    Standardization,
    load_fashion_mnist,
    quadrant_placed,
)
from bayesym.marglik import MarglikConfig, MarglikTrainer, log_marginal_likelihood
from bayesym.priors import GaussianPrior
from bayesym.report import EffectiveParameterReport, effective_parameter_report
from bayesym.runs import ModelConfig, RunConfig, build_model, resolve_device
from curvature import KFACConfig, compute_kfac

warnings.filterwarnings("ignore", category=FutureWarning)

ROOT = Path(__file__).resolve().parent.parent

MODELS: dict[str, str] = {"FC": "fc", "CONV": "conv", "learned": "ffc+conv"}
"""Column name -> layer kind of the backbone (``learned``: F-FC + CONV, Sec. 3)."""

TASKS = ("invariant", "position")
METHODS = ("map", "marglik")
_SPLIT_OFFSET = {"train": 0, "val": 1, "test": 2}

PAPER_TABLE1: dict[str, dict[str, float]] = {
    # Test accuracy (%) of Table 1 (MNIST, 56x56 canvas, a = 10). "Diff. Laplace" = marglik.
    "invariant": {
        "map/FC": 95.73,
        "map/CONV": 99.38,
        "marglik/FC": 97.04,
        "marglik/CONV": 99.23,
        "marglik/learned": 98.86,
    },
    "position": {
        "map/FC": 95.10,
        "map/CONV": 24.68,
        "marglik/FC": 95.46,
        "marglik/CONV": 24.50,
        "marglik/learned": 99.00,
    },
}


# ------------------------------------------------------------------------------------ data
def fashion_mnist_subset(
    split: str, n: int | None, size: int, seed: int, root: str | None = None
) -> ImageDataset:
    """A seeded random subset of a Fashion-MNIST split, downscaled to ``size x size``.

    Downscaling is area interpolation (adaptive average pooling: every output pixel is the
    mean of its 3-4 pixel window for ``28 -> 8``, no input pixel skipped; ``28 -> 14`` is
    exactly the mean of every 2x2 block). Pixels stay in ``[0, 1]`` with a zero background
    (standardise after placing/rotating). ``n = None`` keeps the whole split.

    Returns:
        images ``[n, 1, size, size]``, labels ``[n]`` in ``0..9``.
    """
    data = load_fashion_mnist(split, root=root)
    if n is not None and n < len(data):
        generator = torch.Generator().manual_seed(seed * 7919 + _SPLIT_OFFSET[split])
        data = data.subset(torch.randperm(len(data), generator=generator)[:n])
    if size != data.image_shape[-1]:
        images = F.interpolate(data.images, size=(size, size), mode="area")
        data = data.replace(images=images)
    return data


def standardised(train: ImageDataset, *others: ImageDataset) -> list[ImageDataset]:
    """Standardise every dataset with the per-channel statistics of ``train``."""
    stats = Standardization.fit(train.images)
    return [d.replace(images=stats.apply(d.images)) for d in (train, *others)]


def quadrant_data(
    train_size: int, test_size: int | None, size: int, seed: int, root: str | None = None
) -> dict[str, tuple[ImageDataset, ImageDataset]]:
    """Both quadrant tasks on the same images and quadrant draws: task -> (train, test).

    Images ``[N, 1, 2 size, 2 size]``, standardised with the training images' statistics.
    """
    base = {
        "train": fashion_mnist_subset("train", train_size, size, seed, root),
        "test": fashion_mnist_subset("test", test_size, size, seed, root),
    }
    out = {}
    for task in TASKS:
        placed = [
            quadrant_placed(base[s], seed * 1000 + i, position_labels=task == "position")
            for i, s in enumerate(("train", "test"))
        ]
        train, test = standardised(*placed)
        out[task] = (train, test)
    return out


# ---------------------------------------------------------------------------- training
@dataclass(frozen=True)
class Schedule:
    """Training settings shared by every cell (``bayesym.runs.RunConfig`` fields)."""

    width: int = 2
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    burn_in: int = 10
    hyper_every: int = 5
    hyper_steps: int = 20
    ggn: str = "mc"
    seed: int = 0

    def run_config(
        self, task: str, layer_kind: str, method: str, layer_options: dict[str, Any] | None = None
    ) -> RunConfig:
        """The :class:`~bayesym.runs.RunConfig` of one cell (``task`` is only a label)."""
        return RunConfig(
            task=task,
            model=ModelConfig(layer_kind, self.width, dict(layer_options or {})),
            training=MarglikConfig(
                epochs=self.epochs,
                batch_size=self.batch_size,
                lr=self.lr,
                learn_prior=method == "marglik",
                burn_in=self.burn_in,
                hyper_every=self.hyper_every,
                hyper_steps=self.hyper_steps,
                kfac=KFACConfig(ggn_type=self.ggn),
                seed=self.seed,
            ),
        )


@dataclass
class CellResult:
    """Everything measured for one (task, model, method) cell."""

    task: str
    model: str
    layer_kind: str
    method: str
    parameters: int
    test_accuracy: float
    test_nll: float
    train_accuracy: float
    log_marglik_per_datum: float
    seconds: float
    layers: list[dict[str, Any]] = field(default_factory=list)
    device: str = "cpu"


def laplace_evaluation(
    model: torch.nn.Module,
    prior: GaussianPrior,
    train: ImageDataset,
    ggn: str,
    seed: int,
    batch_size: int = 256,
) -> tuple[float, EffectiveParameterReport]:
    """Log marglik per datum and effective parameters at the current parameters and prior.

    The curvature is the KFAC GGN (``ggn``: ``"mc"`` 1-sample or ``"exact"``) on the whole
    training set, model in eval mode; the MC draws are seeded with ``seed``.
    """
    was_training = model.training
    model.eval()
    try:
        batches = [
            (train.images[i : i + batch_size], train.labels[i : i + batch_size])
            for i in range(0, len(train), batch_size)
        ]
        kfac = compute_kfac(
            model, batches, "classification", KFACConfig(ggn_type=ggn, seed=seed + 424242)
        )
        with torch.no_grad():
            lml = float(log_marginal_likelihood(kfac, prior, model)) / len(train)
        report = effective_parameter_report(model, prior, kfac)
    finally:
        model.train(was_training)
    return lml, report


def layer_summary(report: EffectiveParameterReport) -> list[dict[str, Any]]:
    """Per block layer: precision, P, γ and relative effective parameters of every path."""
    out = []
    for layer, rows in report.layers().items():
        if not layer.startswith("blocks."):
            continue
        total = sum(r.normalised for r in rows)
        out.append(
            {
                "layer": layer,
                "effective_type": max(rows, key=lambda r: r.normalised).path,
                "paths": {
                    r.path: {
                        "prior_precision": r.prior_precision,
                        "numel": r.numel,
                        "effective_parameters": r.effective_parameters,
                        "relative": r.normalised / total if total > 0 else math.nan,
                    }
                    for r in rows
                },
            }
        )
    return out


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]


def train_cell(
    task: str,
    model: str,
    layer_kind: str,
    method: str,
    data: tuple[ImageDataset, ImageDataset],
    schedule: Schedule,
    run_dir: Path,
    data_key: dict[str, Any],
    layer_options: dict[str, Any] | None = None,
    progress: bool = False,
    device: str = "cpu",
) -> CellResult:
    """Train and evaluate one cell; its run directory is keyed by the data and the config.

    A directory holding a finished (or interrupted) run of the same key is resumed by the
    trainer's checkpoint, so re-running the script after an interruption loses at most an
    epoch per cell. ``device`` holds the model and both datasets (not part of the key).
    """
    train, test = (d.to(device) for d in data)
    config = schedule.run_config(task, layer_kind, method, layer_options)
    key = {"data": data_key, "run": config.to_json()}
    cell_dir = run_dir / f"{task}-{model}-{method}-{_digest(key)}"
    cell_dir.mkdir(parents=True, exist_ok=True)
    (cell_dir / "key.json").write_text(json.dumps(key, indent=1))
    torch.manual_seed(config.seed)
    net = build_model(config, train).to(device)
    prior = GaussianPrior(net)
    trainer = MarglikTrainer(
        net, prior=prior, config=config.training, run_dir=cell_dir, progress=progress
    )
    start = time.perf_counter()
    trainer.fit(train)
    test_metrics = trainer.evaluate(test, batch_size=500)
    train_metrics = trainer.evaluate(train, batch_size=500)
    lml, report = laplace_evaluation(net, prior, train, schedule.ggn, schedule.seed)
    seconds = time.perf_counter() - start
    result = CellResult(
        task=task,
        model=model,
        layer_kind=layer_kind,
        method=method,
        parameters=sum(p.numel() for p in net.parameters()),
        test_accuracy=test_metrics["accuracy"],
        test_nll=test_metrics["nll"],
        train_accuracy=train_metrics["accuracy"],
        log_marglik_per_datum=lml,
        seconds=seconds,
        layers=layer_summary(report),
        device=str(device),
    )
    (cell_dir / "result.json").write_text(json.dumps(dataclasses.asdict(result), indent=1))
    (cell_dir / "report.txt").write_text(report.to_table() + "\n")
    return result


# ----------------------------------------------------------------------------- analysis
def _cell(cells: list[CellResult], task: str, model: str, method: str) -> CellResult | None:
    return next((c for c in cells if (c.task, c.model, c.method) == (task, model, method)), None)


def acceptance(cells: list[CellResult], margin: float) -> dict[str, Any]:
    """The issue's three acceptance statements, evaluated on the measured cells.

    * CONV fails the position task: its position accuracy is at most a quarter of its
      invariant accuracy plus ``margin`` (an exactly shift-invariant network cannot beat
      a quarter: it has to guess the quadrant), for both methods;
    * FC is worse than CONV on the invariant task, for both methods;
    * the learned model (marglik) is within ``margin`` of the best cell on both tasks.
    """
    out: dict[str, Any] = {"margin": margin}
    checks = []
    for method in METHODS:
        conv_pos = _cell(cells, "position", "CONV", method)
        conv_inv = _cell(cells, "invariant", "CONV", method)
        if conv_pos and conv_inv:
            bound = conv_inv.test_accuracy / 4
            ok = conv_pos.test_accuracy <= bound + margin
            checks.append(ok)
            out[f"conv_fails_position/{method}"] = {
                "conv_position": conv_pos.test_accuracy,
                "quarter_of_conv_invariant": bound,
                "holds": ok,
            }
        fc_inv = _cell(cells, "invariant", "FC", method)
        if fc_inv and conv_inv:
            ok = fc_inv.test_accuracy < conv_inv.test_accuracy
            checks.append(ok)
            out[f"fc_worse_on_invariant/{method}"] = {
                "fc": fc_inv.test_accuracy,
                "conv": conv_inv.test_accuracy,
                "holds": ok,
            }
    for task in TASKS:
        learned = _cell(cells, task, "learned", "marglik")
        task_cells = [c for c in cells if c.task == task]
        if learned and task_cells:
            best = max(task_cells, key=lambda c: c.test_accuracy)
            gap = best.test_accuracy - learned.test_accuracy
            ok = gap <= margin
            checks.append(ok)
            out[f"learned_near_best/{task}"] = {
                "learned": learned.test_accuracy,
                "best": best.test_accuracy,
                "best_cell": f"{best.method}/{best.model}",
                "gap": gap,
                "holds": ok,
            }
    out["all_hold"] = bool(checks) and all(checks)
    return out


def markdown(cells: list[CellResult]) -> str:
    """Table 1 layout (test accuracy %) plus a detail table per cell."""
    columns = [(m, name) for m in METHODS for name in MODELS]
    head = " | ".join(f"{'MAP' if m == 'map' else 'marglik'} {name}" for m, name in columns)
    lines = [f"| task | {head} |", "|---" * (len(columns) + 1) + "|"]
    params = []
    for m, name in columns:
        c = next((c for c in cells if (c.model, c.method) == (name, m)), None)
        params.append(f"{c.parameters / 1e6:.3g} M" if c else "")
    lines.append("| # params (40 classes) | " + " | ".join(params) + " |")
    for task in TASKS:
        row = []
        for m, name in columns:
            c = _cell(cells, task, name, m)
            row.append(f"{100 * c.test_accuracy:.2f}" if c else "")
        lines.append(f"| {task} | " + " | ".join(row) + " |")
    lines += [
        "",
        "| task | model | method | # params | test acc % | test NLL | train acc % "
        "| log marglik / N | effective layer types | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        types = " ".join(layer["effective_type"] for layer in c.layers if len(layer["paths"]) > 1)
        lines.append(
            f"| {c.task} | {c.model} | {c.method} | {c.parameters} | "
            f"{100 * c.test_accuracy:.2f} | {c.test_nll:.3f} | {100 * c.train_accuracy:.1f} | "
            f"{c.log_marglik_per_datum:.3f} | {types or '-'} | {c.seconds:.0f} |"
        )
    return "\n".join(lines)


def relaxed_layers_markdown(cells: list[CellResult]) -> str:
    """Relative effective parameters of the F-FC path per block for the learned cells."""
    learned = [c for c in cells if c.model == "learned"]
    if not learned:
        return ""
    n_layers = len(learned[0].layers)
    head = " | ".join(f"b{k + 1}" for k in range(n_layers))
    lines = [
        "Relative effective number of parameters of the F-FC path per block (rest: CONV):",
        "",
        f"| task | method | {head} |",
        "|---|---" + "|---" * n_layers + "|",
    ]
    for c in learned:
        values = " | ".join(f"{layer['paths']['ffc']['relative']:.2f}" for layer in c.layers)
        lines.append(f"| {c.task} | {c.method} | {values} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- main
def publish(name: str, payload: dict[str, Any], *tables: str) -> None:
    """Write ``results/<name>.json`` and print the tables, the acceptance checks, wall time."""
    path = write_json(name, payload)
    for table in tables:
        print()
        print(table)
    print()
    print(json.dumps(payload["acceptance"], indent=1))
    print(f"\nwall time {payload['wall_seconds'] / 60:.1f} min; wrote {path}")


def parse_args(argv: list[str] | None, description: str) -> argparse.ArgumentParser:
    """Options shared with ``reproduce_multigroup.py``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=None, help="default: all 10000")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--burn-in", type=int, default=None)
    parser.add_argument("--hyper-every", type=int, default=None)
    parser.add_argument("--hyper-steps", type=int, default=None)
    parser.add_argument("--ggn", choices=("mc", "exact"), default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--quick", action="store_true", help="tiny subset and schedule")
    parser.add_argument("--progress", action="store_true", help="tqdm bar per cell")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (1 on a shared machine)"
    )
    parser.add_argument("--output", default=None, help="results/<output>.json")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    return parser


_SCHEDULE_OPTIONS = (
    "width", "epochs", "batch_size", "lr", "burn_in", "hyper_every", "hyper_steps", "ggn",
)  # fmt: skip


def schedule_from(args: argparse.Namespace, default: Schedule, quick: Schedule) -> Schedule:
    """``default`` (or ``quick``) with the options given on the command line."""
    base = quick if args.quick else default
    changes = {
        name: getattr(args, name) for name in _SCHEDULE_OPTIONS if getattr(args, name) is not None
    }
    return dataclasses.replace(base, seed=args.seed, **changes)


def names(text: str) -> list[str]:
    """A comma-separated option as a list (empty items dropped)."""
    return [item for item in text.split(",") if item]


@dataclass(frozen=True)
class Setup:
    """What the command line of a reproduction script resolves to."""

    schedule: Schedule
    train_size: int
    test_size: int | None
    methods: list[str]
    device: str = "cpu"


def setup(args: argparse.Namespace, default: Schedule, quick: Schedule, train_size: int) -> Setup:
    """Apply ``--threads``; resolve the options both reproduction scripts share.

    Schedule, data sizes (``--quick``: 256 training and 1000 test images; ``train_size`` is the
    full-run default) and methods.
    """
    if args.threads:
        torch.set_num_threads(args.threads)
    return Setup(
        schedule=schedule_from(args, default, quick),
        train_size=args.train_size or (256 if args.quick else train_size),
        test_size=args.test_size or (1000 if args.quick else None),
        methods=names(args.methods),
        device=str(resolve_device(args.device)),
    )


DEFAULT = Schedule(width=4, epochs=30, batch_size=16, lr=3e-3, burn_in=10, hyper_every=5)
QUICK = Schedule(width=2, epochs=4, batch_size=16, lr=3e-3, burn_in=2, hyper_every=2)


def read_cells(
    paths: list[str], same: tuple[str, ...]
) -> tuple[list[dict[str, Any]], list[CellResult]]:
    """The results files ``paths`` and all their cells (for merging runs of single cells).

    Raises:
        ValueError: if a file's ``same`` entries (e.g. data, schedule) differ from the first's.
    """
    parts = [json.loads(Path(p).read_text()) for p in paths]
    for part, path in zip(parts[1:], paths[1:], strict=True):
        for key in same:
            if part[key] != parts[0][key]:
                raise ValueError(f"{path}: its {key} differs from {paths[0]}'s; cannot merge")
    names = {f.name for f in dataclasses.fields(CellResult)}  # drop derived per-cell entries
    cells = [
        CellResult(**{k: v for k, v in c.items() if k in names})
        for part in parts
        for c in part["cells"]
    ]
    return parts, cells


def merge(paths: list[str], name: str, margin: float) -> dict:
    """One results file from runs of single cells (e.g. one process per cell on a GPU).

    The cells of every file are concatenated in table order and the acceptance checks are
    evaluated on all of them; data, schedule and environment are those of the first file
    (all files must share data and schedule).
    """
    parts, cells = read_cells(paths, ("data", "schedule"))
    models = list(MODELS)
    cells.sort(key=lambda c: (TASKS.index(c.task), METHODS.index(c.method), models.index(c.model)))
    payload = {
        **{k: parts[0][k] for k in ("benchmark", "description", "data", "schedule")},
        "wall_seconds": max(part["wall_seconds"] for part in parts),
        "merged_from": [Path(p).name for p in paths],
        "cells": [dataclasses.asdict(c) for c in cells],
        "acceptance": acceptance(cells, margin),
        "paper_table1_test_accuracy": PAPER_TABLE1,
        "environment": parts[0]["environment"],
    }
    publish(name, payload, markdown(cells), relaxed_layers_markdown(cells))
    return payload


def main(argv: list[str] | None = None) -> dict:
    parser = parse_args(argv, __doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=8, help="canvas is twice this")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--margin", type=float, default=0.03, help="'a few points'")
    parser.add_argument("--run-dir", default=str(ROOT / "runs" / "reproduce_quadrants"))
    parser.add_argument(
        "--merge", nargs="+", metavar="JSON", help="merge results files into --output; no training"
    )
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.output or "reproduce_quadrants_merged", args.margin)
    run = setup(args, DEFAULT, QUICK, train_size=3000)
    schedule, train_size, test_size, methods = (
        run.schedule, run.train_size, run.test_size, run.methods,
    )  # fmt: skip
    models, tasks = names(args.models), names(args.tasks)
    data_key = {
        "dataset": "fashion-mnist",
        "image_size": args.image_size,
        "train_size": train_size,
        "test_size": test_size,
        "seed": args.seed,
    }
    start = time.perf_counter()
    data = quadrant_data(train_size, test_size, args.image_size, args.seed)
    cells: list[CellResult] = []
    for task in tasks:
        for method in methods:
            for model in models:
                cell = train_cell(
                    task, model, MODELS[model], method, data[task], schedule,
                    Path(args.run_dir), data_key, progress=args.progress, device=run.device,
                )  # fmt: skip
                cells.append(cell)
                print(
                    f"{task:9s} {model:7s} {method:7s} acc {100 * cell.test_accuracy:6.2f} "
                    f"nll {cell.test_nll:.3f} lml/N {cell.log_marglik_per_datum:8.3f} "
                    f"({cell.seconds:.0f} s)",
                    flush=True,
                )
    wall = time.perf_counter() - start
    checks = acceptance(cells, args.margin)
    payload = {
        "benchmark": "reproduce_quadrants",
        "description": __doc__.split("\n")[0],
        "data": {**data_key, "canvas": 2 * args.image_size, "test_size": len(data[tasks[0]][1])},
        "schedule": dataclasses.asdict(schedule),
        "wall_seconds": wall,
        "cells": [dataclasses.asdict(c) for c in cells],
        "acceptance": checks,
        "paper_table1_test_accuracy": PAPER_TABLE1,
        "environment": environment(),
    }
    name = args.output or ("reproduce_quadrants_quick" if args.quick else "reproduce_quadrants")
    publish(name, payload, markdown(cells), relaxed_layers_markdown(cells))
    return payload


if __name__ == "__main__":
    main()
