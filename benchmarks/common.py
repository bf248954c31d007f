"""Shared helpers of the benchmark scripts: environment capture, interleaved timing, JSON."""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch

REPOSITORY = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"


def environment() -> dict:
    """What the numbers were measured on."""

    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = None
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "packages": {
            p: version(p)
            for p in (
                "torch",
                "laplace-torch",
                "asdfghjkl",
                "curvlinops-for-pytorch",
                "backpack-for-pytorch",
                "bayesym",
            )
        },
    }


def synchronize(device: str | torch.device) -> None:
    """Wait for a GPU's queued work (no-op on the CPU), so that a clock read is meaningful."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    methods: dict[str, Callable[[], object]],
    repeats: int,
    warmup: int = 1,
    device: str | torch.device = "cpu",
) -> dict[str, list[float]]:
    """Wall times of every method, run round-robin so machine noise hits all of them alike.

    On a GPU ``device`` is synchronised before and after every call.
    """
    for _ in range(warmup):
        for fn in methods.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def command_line(script: str, argv: list[str] | None = None) -> str:
    """``python benchmarks/<script> ARGS``: the command that reproduces this run.

    ``argv`` is what ``main`` received (``None``: the process's own arguments).
    """
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python", f"benchmarks/{Path(script).name}", *map(shlex.quote, args)])


def write_json(name: str, payload: dict) -> Path:
    """Write ``results/<name>.json`` (an ``out`` directory inside the repository: relative)."""
    out = payload.get("out")
    if isinstance(out, str) and Path(out).is_absolute() and Path(out).is_relative_to(REPOSITORY):
        payload = {**payload, "out": str(Path(out).relative_to(REPOSITORY))}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path
