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

Nothing is written before every option is checked, the data are loaded and the network is
built, so a command that fails to start leaves its ``--out`` usable by the corrected command.
A resume says where it starts ("resuming from epoch N of M"); only settings that change the
result block it. A full or read-only disk, an unreadable checkpoint (the previous one is used
if it reads, with a warning) and Ctrl-C (exit status 130) end in one line that names the file
or the epoch to resume from. At the end the command lists the files it wrote.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bayesym.cli.errors import CliError
from bayesym.cli.options import (
    GROUP_CHOICES,
    RUN_OPTIONS,
    add_config_options,
    add_session_options,
    check_run_config,
    run_config_from_args,
    set_threads,
)
from bayesym.data.errors import DataError
from bayesym.data.registry import TASKS
from bayesym.marglik.checkpoint import CheckpointError, checkpoint_epoch
from bayesym.marglik.distributed import (
    RankFailedError,
    is_main_process,
    torchrun_process_group,
)
from bayesym.marglik.history import load_history
from bayesym.report import path_label, plot_history, report_from_history
from bayesym.runs import (
    RUN_FILES,
    RunConfig,
    RunResult,
    check_resumable,
    load_groups,
    load_symmetries,
    run,
    run_title,
)

__all__ = ["register"]

DEMO_TASKS = ("quadrant-digits", "quadrant-position-digits")
"""The demo's two tasks: label = digit (translation-invariant), label = digit and quadrant."""


def _write_failure(err: OSError, out: Path) -> str:
    """One line naming the file that could not be written and the fix."""
    if err.strerror and err.strerror.startswith("cannot write"):
        return err.strerror  # the checkpoint's own message (bayesym.marglik.checkpoint)
    where = err.filename or out
    return (
        f"cannot write {where}: {err.strerror or err}; free disk space or make {out} writable "
        "(or choose another --out), then rerun the same command"
    )


def _run(
    config: RunConfig, out: Path, args: argparse.Namespace, device: str | None = None
) -> RunResult:
    """:func:`~bayesym.runs.run` with its failures as one line each (and the resume said)."""
    checkpoint = out / "checkpoint.pt"
    try:
        check_resumable(config, out)
        start = checkpoint_epoch(checkpoint)
        if start is not None and is_main_process():
            epochs = config.training.epochs
            print(f"resuming from epoch {start} of {epochs} ({out})", file=sys.stderr)
        return run(config, out, progress=not args.quiet, device=device or args.device)
    except DataError:
        raise  # one line naming the data files and how to get them (bayesym.cli.main)
    except CheckpointError as err:
        raise CliError(str(err), exit_code=1) from None
    except ValueError as err:
        raise CliError(str(err)) from None
    except OSError as err:
        raise CliError(_write_failure(err, out), exit_code=1) from None
    except KeyboardInterrupt:
        epoch = checkpoint_epoch(checkpoint) or 0
        raise CliError(
            f"interrupted; rerun the same command to resume from epoch {epoch} ({out})",
            exit_code=130,
        ) from None


def _print_result(result: RunResult, title: str) -> None:
    m = result.metrics
    print(f"\n== {title} ({result.run_dir}) ==")
    if result.report is not None:
        print(result.report.to_table())
    accuracy = m.get("test_accuracy")
    line = f"test accuracy {accuracy:.4f}" if accuracy is not None else ""
    print(f"{line}  test NLL {m['test_nll']:.4f}  parameters {m['parameters']}")


def _print_files(*run_dirs: Path) -> None:
    """List the files written in the run directories (the same in each) and what each holds."""
    where = ", ".join(map(str, run_dirs))
    print(
        f"\nfiles written in {where}:"
        if len(run_dirs) == 1
        else f"\nfiles written in each of {where}:"
    )
    for name, what in RUN_FILES.items():
        if all((run_dir / name).is_file() for run_dir in run_dirs):
            print(f"  {name:<19} {what}")


def _fit(args: argparse.Namespace) -> int:
    if args.task not in TASKS:
        raise CliError(f"unknown task {args.task!r}; `bayesym data list` shows the tasks")
    config = run_config_from_args(args)
    check_run_config(config)
    set_threads(args.threads)
    if args.dist_timeout <= 0:
        raise CliError(f"--dist-timeout must be positive, got {args.dist_timeout}")
    # under torchrun: one rank of a data-parallel run (bayesym.marglik.distributed)
    with torchrun_process_group(args.device, args.dist_timeout) as device:
        try:
            result = _run(config, Path(args.out), args, device)
        except RankFailedError as err:  # another rank died: one line, exit status 1
            raise CliError(str(err), exit_code=1) from None
        if is_main_process():
            _print_result(result, run_title(config))
            _print_files(result.run_dir)
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
        report = report_from_history(history, groups, load_symmetries(run_dir))
    except ValueError as err:
        raise CliError(f"{run_dir}: {err} (a MAP run has no effective parameters)") from None
    print(report.to_table())
    metrics_path = run_dir / "metrics.json"
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        print(json.dumps({k: v for k, v in metrics.items() if k.startswith("test_")}))
    config_path = run_dir / "config.json"
    title = None
    if config_path.is_file():
        title = run_title(RunConfig.from_json(json.loads(config_path.read_text())))
    plot_history(history, groups, run_dir / "plot.png", title=title)
    print(f"plot: {run_dir / 'plot.png'}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    configs = {
        task: run_config_from_args(args, overrides={"task": task, "model.layer_kind": "ffc+conv"})
        for task in DEMO_TASKS
    }
    for config in configs.values():
        check_run_config(config, map_flag=False)
    set_threads(args.threads)
    results = {}
    for i, (task, config) in enumerate(configs.items(), 1):
        print(f"[task {i} of {len(configs)}] {task}: {TASKS[task].description}", file=sys.stderr)
        results[task] = _run(config, out / task, args)
        _print_result(results[task], f"{task}: F-FC + CONV learned with the marginal likelihood")
    _print_choices(results)
    _print_files(*(r.run_dir for r in results.values()))
    return 0


def _print_choices(results: dict[str, RunResult]) -> None:
    """The path every layer chose on both tasks, each with the symmetry it stands for."""
    invariant, position = (results[t] for t in DEMO_TASKS)
    inv = invariant.report.effective_labels() if invariant.report else {}
    pos = position.report.effective_labels() if position.report else {}
    print("\n== learned symmetry per layer (path with the largest relative effective params) ==")
    rows = [("layer", "invariant task", "position task")]
    rows += [(layer, inv[layer], pos.get(layer, "-")) for layer in inv]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(f"{c:<{w}}" for c, w in zip(row, widths, strict=True)).rstrip())
    print(
        f"(in brackets: the symmetry of the chosen path; {path_label('conv', 'translations')} is "
        f"a convolution, {path_label('ffc', 'none')} a factored fully-connected path that uses "
        "positions)"
    )
    print(
        "\ntest accuracy: invariant task (10 classes) "
        f"{invariant.metrics['test_accuracy']:.3f}, position task (40 classes) "
        f"{position.metrics['test_accuracy']:.3f}"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fit``, ``report`` and ``demo``."""
    fit = subparsers.add_parser(
        "fit",
        help="train a model with the marginal likelihood (or MAP)",
        description="Train one network on one task into --out (re-running resumes).",
    )
    fit.add_argument("--out", required=True, help="run directory (resumed if it exists)")
    add_config_options(fit, RUN_OPTIONS, RunConfig)
    fit.add_argument(
        "--group",
        default=None,
        choices=GROUP_CHOICES,
        help="group of the group kinds (gconv, ...): a subgroup of D4 (default: the kind's, "
        f"C4; one of: {', '.join(GROUP_CHOICES)})",
    )
    fit.add_argument("--map", action="store_true", help="MAP with a fixed unit prior instead")
    fit.add_argument(
        "--dist-timeout",
        type=float,
        default=600.0,
        help="under torchrun: seconds a rank waits for the others before the run fails "
        "(default 600)",
    )
    add_session_options(fit)
    fit.set_defaults(handler=_fit)

    report = subparsers.add_parser("report", help="effective parameters of a finished run")
    report.add_argument("run_dir")
    report.set_defaults(handler=_report)

    demo = subparsers.add_parser(
        "demo",
        help="learn layer-wise symmetries on digits quadrants",
        description="Train F-FC + CONV with the marginal likelihood on "
        f"{' and '.join(DEMO_TASKS)} and print which symmetry every layer chose.",
    )
    demo.add_argument("--out", default="runs/demo", help="directory of the two runs")
    add_config_options(demo, RUN_OPTIONS, RunConfig, exclude=("--task", "--kind"))
    add_session_options(demo)
    demo.set_defaults(handler=_demo)
