"""One rank of the data-parallel tests (tests/marglik/test_distributed.py).

Run as ``python distributed_worker.py OUT`` with the torchrun environment (RANK,
WORLD_SIZE, MASTER_ADDR, MASTER_PORT). The problem builders are shared with the test, which
computes the one-process reference in its own process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from datetime import timedelta

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bayesym.marglik import MarglikConfig, MarglikTrainer
from bayesym.marglik.distributed import RankFailedError
from bayesym.marglik.objective import log_marginal_likelihood
from bayesym.priors import GaussianPrior
from curvature import KFACConfig, compute_kfac

PRECISION = 0.7
CONFIG = MarglikConfig(
    epochs=4,
    batch_size=16,
    lr=1e-2,
    burn_in=1,
    hyper_every=1,
    hyper_steps=3,
    kfac=KFACConfig(ggn_type="exact"),
)


def kfac_problem():
    """A small CNN and 21 images (odd: the two shards differ in size)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(21, 2, 5, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (21,), generator=g)
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(27, 3)
    ).double()  # fmt: skip
    return model, x, y


def kfac_summary(model, kfac):
    prior = GaussianPrior(model)
    with torch.no_grad():
        prior.log_precision.fill_(torch.log(torch.tensor(PRECISION)))
    return {
        "factors": {b.name: [f.to_dense() for f in b.factors] for b in kfac.blocks},
        "num_data": kfac.num_data,
        "log_likelihood": kfac.log_likelihood,
        "marglik": log_marginal_likelihood(kfac, prior, model).detach(),
    }


def trainer_problem():
    """An MLP and 51 points: three batches of 16 and a last one of 3, split 2 + 1."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(51, 4, generator=g, dtype=torch.float64)
    y = (x @ torch.randn(4, 3, generator=g, dtype=torch.float64)).argmax(-1)
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    return model, x, y


def train(run_dir=None, charge=None, loader_seed=None):
    """Train on the tensors, or (``loader_seed``) through a shuffling DataLoader so seeded."""
    model, x, y = trainer_problem()
    data = (x, y)
    if loader_seed is not None:
        generator = torch.Generator().manual_seed(loader_seed)
        data = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=generator)
    trainer = MarglikTrainer(model, config=CONFIG, run_dir=run_dir, progress=False, charge=charge)
    history = trainer.fit(data)
    return {
        "precisions": trainer.prior.precisions.detach().clone(),
        "parameters": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "marglik": [r.marglik for r in history],
        "train_loss": [r.train_loss for r in history],
    }


STEPS_PER_EPOCH = 4


class StopTraining(Exception):
    pass


def _stop_after(steps: int):
    count = [0]

    def charge(kind: str, images: int) -> None:
        count[0] += kind == "map"
        if count[0] > steps:
            raise StopTraining

    return charge


def _kill_rank_one_after(steps: int):
    count = [0]

    def charge(kind: str, images: int) -> None:
        count[0] += kind == "map"
        if count[0] > steps:
            os.kill(os.getpid(), signal.SIGKILL)

    return charge


def main(out: str) -> None:
    torch.distributed.init_process_group("gloo", timeout=timedelta(seconds=30))
    rank = torch.distributed.get_rank()
    torch.set_default_dtype(torch.float64)
    result = {}
    model, x, y = kfac_problem()
    shard = (x[rank::2], y[rank::2])
    kfac = compute_kfac(
        model, [shard], "classification", process_group=torch.distributed.group.WORLD
    )
    result["kfac"] = kfac_summary(model, kfac)
    result["train"] = train()
    # stopped after two epochs (both ranks), resumed from rank 0's checkpoint by both
    run_dir = os.path.join(out, "run")
    with contextlib.suppress(StopTraining):
        train(run_dir=run_dir, charge=_stop_after(2 * STEPS_PER_EPOCH))
    result["resumed"] = train(run_dir=run_dir)
    result["files"] = sorted(os.listdir(run_dir))
    # a DataLoader seeded alike on both ranks: the same batches, sharded; seeded per rank: refused
    result["loader"] = train(loader_seed=5)
    try:
        train(loader_seed=rank)
    except ValueError as err:
        result["unequal_loaders"] = str(err)
    torch.save(result, os.path.join(out, f"rank{rank}.pt"))
    # last: rank 1 dies in the sixth MAP step; rank 0 must fail with a clear error, not hang
    start = time.monotonic()
    try:
        train(charge=_kill_rank_one_after(5) if rank == 1 else None)
    except RankFailedError as err:
        result["failure"] = (str(err), time.monotonic() - start)
        torch.save(result, os.path.join(out, f"rank{rank}.pt"))


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    finally:  # as the CLI does: a group left to the interpreter's exit can abort the process
        torch.distributed.destroy_process_group()
