r"""`bayesym demo` with the CLI's default threads against `--threads 1`, next to a busy process.

Each variant runs the demo as a user runs it (``python -m bayesym demo`` in a fresh
interpreter, ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` unset) while one other process keeps a core
busy, round-robin over the variants for ``--repeats`` rounds. The shortened demo has the
demo's per-step cost (same network width, batch size and images) with fewer epochs and
training images; ``--full`` runs the demo's own schedule. Variants:

* ``default``: no ``--threads`` (the CLI's default);
* ``threads1``: ``--threads 1``;
* ``torch``: ``--threads T`` with ``T`` torch's own default on this machine (one thread per
  core), what the CLI used before it had a default.

Reported per variant: the median wall seconds of the whole command and of the training alone
(``fit_seconds_this_session`` of both runs), and the ratios to ``threads1``.

Usage::

    python benchmarks/demo_threads.py --quick        # a smoke run
    python benchmarks/demo_threads.py                # 3 rounds of the shortened demo
    python benchmarks/demo_threads.py --full --repeats 1 --variants default,threads1
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, command_line, environment

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("quadrant-digits", "quadrant-position-digits")
BUSY = """
import os
while os.getppid() == {parent}:  # busy on one core; ends if this script is gone
    for _ in range(1_000_000):
        pass
"""
"""The other busy process: a pure-Python loop."""


def _clean_env() -> dict[str, str]:
    """The environment of a user's shell: no thread limits, this checkout importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def torch_default_threads() -> int:
    """Torch's intra-op threads in a fresh interpreter without thread limits."""
    out = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        capture_output=True,
        text=True,
        env=_clean_env(),
        check=True,
    )
    return int(out.stdout.strip())


def demo_arguments(args: argparse.Namespace) -> list[str]:
    """The demo's options: its own schedule (--full) or a shortened one with the same steps."""
    if args.full:
        return []
    return ["--epochs", str(args.epochs), "--burn-in", "1", "--hyper-every", "1",
            "--train-subset", str(args.train_subset)]  # fmt: skip


def run_demo(extra: list[str], demo: list[str], out: Path) -> dict[str, float]:
    """Run the demo once; its wall seconds and the training seconds of both runs."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "bayesym", "demo", "--out", str(out), "--quiet", *demo, *extra],
        check=True,
        env=_clean_env(),
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    fit = sum(
        json.loads((out / task / "metrics.json").read_text())["fit_seconds_this_session"]
        for task in TASKS
    )
    return {"wall": wall, "fit": fit}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="rounds over the variants (3)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the shortened demo (3)")
    parser.add_argument(
        "--train-subset", type=int, default=300, help="training images of the shortened demo"
    )
    parser.add_argument("--full", action="store_true", help="the demo's own schedule")
    parser.add_argument(
        "--variants", default="default,threads1,torch", help="comma-separated (all three)"
    )
    parser.add_argument("--no-busy", action="store_true", help="without the busy process")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 2 epochs, 32")
    parser.add_argument("--threads", type=int, default=1, help="threads of this script (1)")
    parser.add_argument("--out", type=Path, default=None, help="default results/demo_threads")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.epochs, args.train_subset = 1, 2, 32
    if args.out is None:  # a smoke run never replaces the published measurement
        args.out = RESULTS / ("demo_threads_quick.json" if args.quick else "demo_threads.json")
    return args


def main() -> None:
    args = parse_args()
    torch_threads = torch_default_threads()
    variants = {
        "default": [],
        "threads1": ["--threads", "1"],
        "torch": ["--threads", str(torch_threads)],
    }
    chosen = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(chosen) - set(variants))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {list(variants)}")
    demo = demo_arguments(args)
    samples: dict[str, list[dict[str, float]]] = {v: [] for v in chosen}
    busy = None
    if not args.no_busy:
        busy = subprocess.Popen([sys.executable, "-c", BUSY.format(parent=os.getpid())])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` ends it
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for round_ in range(args.repeats):
                for variant in chosen:
                    out = Path(tmp) / f"{variant}-{round_}"
                    samples[variant].append(run_demo(variants[variant], demo, out))
                    print(f"round {round_ + 1}: {variant:<9} {samples[variant][-1]}", flush=True)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    medians = {
        v: {k: statistics.median(s[k] for s in samples[v]) for k in ("wall", "fit")} for v in chosen
    }
    summary = {}
    for v in chosen:
        summary[v] = dict(medians[v])
        if "threads1" in medians:
            for k in ("wall", "fit"):
                summary[v][f"{k}_ratio_to_threads1"] = medians[v][k] / medians["threads1"][k]
    payload = {
        "environment": environment(),
        "command": command_line(__file__),
        "demo_arguments": demo,
        "busy_process": not args.no_busy,
        "torch_default_threads": torch_threads,
        "samples": samples,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1))
    print(f"\n{'variant':<9} {'wall s':>8} {'fit s':>8} {'wall/t1':>8} {'fit/t1':>8}")
    for v, row in summary.items():
        ratios = [row.get(f"{k}_ratio_to_threads1", float("nan")) for k in ("wall", "fit")]
        print(f"{v:<9} {row['wall']:>8.1f} {row['fit']:>8.1f} {ratios[0]:>8.2f} {ratios[1]:>8.2f}")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
