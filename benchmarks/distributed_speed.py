"""Scale-out speed: data-parallel marglik on 2 processes, and candidates on Ray, against one.

Two measurements, each a ratio measured side by side in one run (repeats interleaved):

* **data-parallel marglik**: one process against ``--ranks`` gloo processes (torchrun's
  environment, launched by this script), each with ``--threads`` torch threads, on the same
  CNN and synthetic 16x16 images. Inside every process, after a warm-up epoch, one MAP epoch
  and one hyper step (KFAC, exact GGN, and the prior's Adam steps) are timed; rank 0 reports.
  Also reported: the bytes all-reduced per hyper step (the factor sums; what
  ``compute_kfac(process_group=...)`` sends) against the bytes of the epoch's gradient
  all-reduces (one gradient per MAP step, as DDP sends them).
* **candidates**: ``--candidates`` independent MAP trainings (each seeded) through the
  serial executor in this process and through :class:`~bayesym.selectors.ray_executor.RayExecutor`
  on a local Ray instance of ``--ranks`` CPUs; throughput in candidates per second, the
  start of the Ray instance timed apart. Both return the same final losses (checked).

Usage::

    python benchmarks/distributed_speed.py --quick   # smoke run, under 3 minutes on 2 cores
    python benchmarks/distributed_speed.py           # default size (~10 min on 2 cores)
    python benchmarks/distributed_speed.py --ranks 4 --output distributed_speed_4   # 4 cores

Without Ray installed the candidate measurement is skipped.

Writes ``benchmarks/results/distributed_speed.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
from common import environment, median, write_json
from torch import nn

warnings.filterwarnings("ignore", category=FutureWarning)  # ASDL's deprecated hooks


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
    )  # fmt: skip


def synthetic(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 16, 16, generator=g)
    y = (x.flatten(1)[:, :10] + 0.5 * torch.randn(n, 10, generator=g)).argmax(-1)
    return x, y


def _trainer(n: int, batch_size: int, seed: int = 0, learn_prior: bool = True):
    from bayesym.marglik import MarglikConfig, MarglikTrainer
    from curvature import KFACConfig

    x, y = synthetic(n)
    torch.manual_seed(seed)
    config = MarglikConfig(
        epochs=100, batch_size=batch_size, lr=1e-3, burn_in=0, hyper_every=1, hyper_steps=20,
        learn_prior=learn_prior, kfac=KFACConfig(ggn_type="exact"), seed=seed,
    )  # fmt: skip
    return MarglikTrainer(cnn(), config=config, progress=False), x, y


# --------------------------------------------------------------------- data-parallel worker
def worker(n: int, batch_size: int, repeats: int, out: str) -> None:
    """One process of the data-parallel measurement (rank 0 writes ``out``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        torch.distributed.init_process_group("gloo")
    from bayesym.marglik.data import training_data

    trainer, x, y = _trainer(n, batch_size)
    source = training_data((x, y))  # what MarglikTrainer.fit trains on
    trainer._map_epoch(source, 0)  # warm-up: allocations, DDP buckets, first KFAC
    trainer._hyper_step(source, 0)
    map_s, hyper_s = [], []
    for epoch in range(1, repeats + 1):
        start = time.perf_counter()
        trainer._map_epoch(source, epoch)
        middle = time.perf_counter()
        trainer._hyper_step(source, epoch)
        map_s.append(middle - start)
        hyper_s.append(time.perf_counter() - middle)
    kfac = trainer.last_kfac
    factor_bytes = sum(f.nbytes for block in kfac.blocks for f in block.factors)
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    gradient_bytes = sum(p.numel() * p.element_size() for p in params)
    steps = -(-n // batch_size)
    if world == 1 or torch.distributed.get_rank() == 0:
        Path(out).write_text(
            json.dumps(
                {
                    "ranks": world,
                    "map_epoch_s": map_s,
                    "hyper_step_s": hyper_s,
                    "factor_bytes_per_hyper_step": factor_bytes,
                    "gradient_bytes_per_step": gradient_bytes,
                    "gradient_bytes_per_epoch": gradient_bytes * steps,
                    "map_steps_per_epoch": steps,
                    "kfac_blocks": len(kfac.blocks),
                    "num_data": kfac.num_data,
                }
            )
        )
    if world > 1:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(ranks: int, args: argparse.Namespace, out: Path) -> dict:
    """Run :func:`worker` on ``ranks`` processes (one: no process group); rank 0's record."""
    port = str(_free_port())
    command = [sys.executable, __file__, "--worker", "--n", str(args.n),
               "--batch-size", str(args.batch_size), "--repeats", str(args.repeats),
               "--out", str(out)]  # fmt: skip
    procs = []
    for rank in range(ranks):
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        env.update(RANK=str(rank), WORLD_SIZE=str(ranks), LOCAL_RANK=str(rank))
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        procs.append(subprocess.Popen(command, env=env))
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError(f"a worker of the {ranks}-process run failed")
    return json.loads(out.read_text())


# ------------------------------------------------------------------------------ candidates
def train_candidate(shared: dict, seed: int) -> float:
    """One candidate: a seeded CNN, MAP-trained for ``shared['epochs']`` epochs; final loss."""
    from bayesym.marglik.data import training_data

    trainer, x, y = _trainer(shared["n"], shared["batch_size"], seed=seed, learn_prior=False)
    source = training_data((x, y))
    total = 0.0
    for epoch in range(shared["epochs"]):
        total = trainer._map_epoch(source, epoch)[0]
    return total / shared["n"]


def candidates(args: argparse.Namespace) -> dict:
    from bayesym.selectors import SerialExecutor
    from bayesym.selectors.ray_executor import RayExecutor

    shared = {"n": args.candidate_n, "batch_size": args.batch_size, "epochs": 1}
    seeds = list(range(args.candidates))
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    executor = RayExecutor(num_cpus=args.ranks, threads=args.threads)
    executor.start()
    ray_start = time.perf_counter() - start
    executor.map(train_candidate, seeds[: args.ranks], shared=shared)  # warm the workers
    SerialExecutor().map(train_candidate, seeds[:1], shared=shared)  # and this process
    serial_s, ray_s = [], []
    try:
        for _ in range(args.repeats):
            start = time.perf_counter()
            serial = SerialExecutor().map(train_candidate, seeds, shared=shared)
            serial_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            remote = executor.map(train_candidate, seeds, shared=shared)
            ray_s.append(time.perf_counter() - start)
    finally:
        executor.close()
    if remote != serial:
        raise RuntimeError(f"Ray and serial results differ: {remote} vs {serial}")
    return {"ray_start_s": ray_start, "serial_s": serial_s, "ray_s": ray_s, "losses": serial}


# ------------------------------------------------------------------------------------ main
def table(result: dict) -> str:
    one, many = result["data_parallel"]["1"], result["data_parallel"][str(result["ranks"])]
    r = result["ranks"]
    rows = [
        f"| measurement | 1 process | {r} processes | speed-up |",
        "|---|---|---|---|",
    ]
    for key, label in (("map_epoch_s", "MAP epoch (s)"), ("hyper_step_s", "hyper step (s)")):
        a, b = median(one[key]), median(many[key])
        rows.append(f"| {label} | {a:.2f} | {b:.2f} | {a / b:.2f}x |")
    c = result["candidates"]
    k = result["args"]["candidates"]
    if c is not None:
        a, b = median(c["serial_s"]), median(c["ray_s"])
        rows.append(
            f"| {k} candidates, serial vs Ray (s) | {a:.2f} | {b:.2f} | {a / b:.2f}x "
            f"({k / a:.2f} vs {k / b:.2f} candidates/s) |"
        )
        rows.append(f"| Ray start (s, once) | | {c['ray_start_s']:.1f} | |")
    factor, grads = many["factor_bytes_per_hyper_step"], many["gradient_bytes_per_epoch"]
    lines = "\n".join(rows)
    return (
        f"{lines}\n\nall-reduced per hyper step: {factor / 1024:.0f} KiB of factor sums; per "
        f"MAP epoch: {grads / 1024:.0f} KiB of gradients ({many['map_steps_per_epoch']} steps "
        f"x {many['gradient_bytes_per_step'] / 1024:.0f} KiB), {factor / grads:.3f} of it."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (small sizes)")
    parser.add_argument("--ranks", type=int, default=2, help="processes / Ray CPUs (2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--n", type=int, default=None, help="images of the marglik run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=None, help="timed epochs / map calls")
    parser.add_argument("--candidates", type=int, default=4, help="independent candidates")
    parser.add_argument("--candidate-n", type=int, default=None, help="images per candidate")
    parser.add_argument(
        "--output",
        default=None,
        help="result file benchmarks/results/NAME.json (default distributed_speed[_quick])",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        worker(args.n, args.batch_size, args.repeats, args.out)
        return
    args.output = args.output or ("distributed_speed_quick" if args.quick else "distributed_speed")
    args.n = args.n or (1024 if args.quick else 4096)
    args.candidate_n = args.candidate_n or (1024 if args.quick else 4096)
    args.repeats = args.repeats or (3 if args.quick else 5)
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"distributed_speed_{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    data_parallel = {}
    for ranks in (1, args.ranks):  # each run repeats its timed epochs inside the processes
        print(f"data-parallel marglik, {ranks} process(es) ...", flush=True)
        data_parallel[str(ranks)] = launch(ranks, args, scratch / f"ranks{ranks}.json")
    ray = importlib.util.find_spec("ray") is not None
    print(f"{args.candidates} candidates, serial and on Ray ..." if ray else "no Ray", flush=True)
    result = {
        "args": vars(args),
        "ranks": args.ranks,
        "data_parallel": data_parallel,
        "candidates": candidates(args) if ray else None,  # pip install "bayesym[ray]"
        "environment": environment(),
    }
    path = write_json(args.output, result)
    print(table(result))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
