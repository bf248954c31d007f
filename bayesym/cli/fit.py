"""``bayesym fit``, ``bayesym report`` and ``bayesym demo``.

Usage::

    bayesym fit --task quadrant-position-digits --kind ffc+conv --epochs 40 --out runs/pos
    bayesym report runs/pos
    bayesym demo [--out runs/demo] [--epochs 40]

Under ``torchrun --nproc-per-node N -m bayesym fit ...`` the N processes train one model
data-parallel (:mod:`bayesym.marglik.distributed`); rank 0 writes the run directory and prints.

``fit`` trains one model (:func:`bayesym.runs.run`) into a run directory; running it again on
the same directory resumes from the last epoch's checkpoint (after an interruption or a kill)
and ends with the same result. ``report`` prints the per-layer effective-parameter table of a
run and re-draws its plot. ``demo`` is the README's main job: on the embedded digits quadrant
tasks it trains the relaxed F-FC + CONV network with the marginal likelihood on the
translation-invariant task (10 classes) and on the position task (40 classes), then prints
which symmetry every layer chose and the test accuracy of both.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bayesym.cli.errors import CliError
from bayesym.cli.options import add_run_options, run_config_from_args
from bayesym.data.registry import TASKS
from bayesym.marglik.distributed import (
    RankFailedError,
    is_main_process,
    torchrun_process_group,
)
from bayesym.marglik.history import load_history
from bayesym.report import plot_history, report_from_history
from bayesym.runs import RunConfig, RunResult, load_groups, run

__all__ = ["register"]


def _add_session_options(parser: argparse.ArgumentParser) -> None:
    """Options that change how a run is shown or where it runs, never its result."""
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--device", default="cpu", help="where to train: cpu (default), cuda or cuda:N"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's choice; 1 on a busy shared machine)",
    )


def _set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (torch intra-op threads).

    With an OpenMP thread on every core, any other busy process stalls each parallel region
    (measured on 2 shared cores: a training step 17 ms with 1 thread, 1.3 s with 2), so one
    thread is the safe choice on a shared machine.
    """
    if args.threads is not None:
        if args.threads < 1:
            raise CliError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)


def _run(
    config: RunConfig, out: Path, args: argparse.Namespace, device: str | None = None
) -> RunResult:
    try:
        return run(config, out, progress=not args.quiet, device=device or args.device)
    except ValueError as err:
        raise CliError(str(err)) from None


def _print_result(result: RunResult, title: str) -> None:
    m = result.metrics
    print(f"\n== {title} ({result.run_dir}) ==")
    if result.report is not None:
        print(result.report.to_table())
    accuracy = m.get("test_accuracy")
    line = f"test accuracy {accuracy:.4f}" if accuracy is not None else ""
    print(f"{line}  test NLL {m['test_nll']:.4f}  parameters {m['parameters']}")


def _fit(args: argparse.Namespace) -> int:
    if args.task not in TASKS:
        raise CliError(f"unknown task {args.task!r}; `bayesym data list` shows the tasks")
    _set_threads(args)
    config = run_config_from_args(args)
    if args.dist_timeout <= 0:
        raise CliError(f"--dist-timeout must be positive, got {args.dist_timeout}")
    # under torchrun: one rank of a data-parallel run (bayesym.marglik.distributed)
    with torchrun_process_group(args.device, args.dist_timeout) as device:
        try:
            result = _run(config, Path(args.out), args, device)
        except RankFailedError as err:  # another rank died: one line, exit status 1
            raise CliError(str(err), exit_code=1) from None
        if is_main_process():
            _print_result(result, f"{config.task}: {config.model.layer_kind}, {config.method}")
    return 0


def _report(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    history_path = run_dir / "history.json"
    if not history_path.is_file():
        raise CliError(f"{run_dir} is not a run directory (no history.json); run `bayesym fit`")
    try:
        history = load_history(history_path)
    except ValueError as err:
        raise CliError(str(err)) from None
    groups = load_groups(run_dir)
    try:
        report = report_from_history(history, groups)
    except ValueError as err:
        raise CliError(f"{run_dir}: {err} (a MAP run has no effective parameters)") from None
    print(report.to_table())
    metrics_path = run_dir / "metrics.json"
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        print(json.dumps({k: v for k, v in metrics.items() if k.startswith("test_")}))
    plot_history(history, groups, run_dir / "plot.png")
    print(f"plot: {run_dir / 'plot.png'}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    _set_threads(args)
    out = Path(args.out)
    results = {}
    for task in ("quadrant-digits", "quadrant-position-digits"):
        config = run_config_from_args(
            args, overrides={"task": task, "model.layer_kind": "ffc+conv"}
        )
        results[task] = _run(config, out / task, args)
        _print_result(results[task], f"{task}: F-FC + CONV learned with the marginal likelihood")
    print("\n== learned symmetry per layer (path with the largest relative effective params) ==")
    inv, pos = (results[t].report.effective_types() for t in results)
    print(f"{'layer':<18} {'invariant task':>15} {'position task':>15}")
    for layer in inv:
        print(f"{layer:<18} {inv[layer]:>15} {pos.get(layer, '-'):>15}")
    print(
        "\ntest accuracy: invariant task (10 classes) "
        f"{results['quadrant-digits'].metrics['test_accuracy']:.3f}, position task (40 classes) "
        f"{results['quadrant-position-digits'].metrics['test_accuracy']:.3f}"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fit``, ``report`` and ``demo``."""
    fit = subparsers.add_parser("fit", help="train a model with the marginal likelihood (or MAP)")
    fit.add_argument("--out", required=True, help="run directory (resumed if it exists)")
    add_run_options(fit)
    fit.add_argument("--group", default=None, help="group of GCONV kinds (e.g. C4, D4)")
    fit.add_argument("--map", action="store_true", help="MAP with a fixed unit prior instead")
    fit.add_argument(
        "--dist-timeout",
        type=float,
        default=600.0,
        help="under torchrun: seconds a rank waits for the others before the run fails "
        "(default 600)",
    )
    _add_session_options(fit)
    fit.set_defaults(handler=_fit)

    report = subparsers.add_parser("report", help="effective parameters of a finished run")
    report.add_argument("run_dir")
    report.set_defaults(handler=_report)

    demo = subparsers.add_parser("demo", help="learn layer-wise symmetries on digits quadrants")
    demo.add_argument("--out", default="runs/demo", help="directory of the two runs")
    add_run_options(demo, exclude=("--task", "--kind"))
    _add_session_options(demo)
    demo.set_defaults(handler=_demo)
