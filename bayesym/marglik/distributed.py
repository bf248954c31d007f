r"""Data-parallel marglik training over the ranks of a ``torch.distributed`` process group.

When a process group with more than one rank is initialised (``torchrun``, or
``torch.distributed.init_process_group`` in any script), :class:`~bayesym.marglik.MarglikTrainer`
trains data-parallel through :class:`DataParallel`:

* **MAP steps** run the model under ``DistributedDataParallel``. Every rank draws the same
  seeded permutation and the same global batches of ``batch_size`` points; rank ``r`` takes
  positions ``r, r + R, r + 2R, ...`` of each batch (``R`` ranks; the interleaving of
  ``DistributedSampler``). Its loss is :math:`w_r\,\overline{\ell}_r + \frac{1}{2N}\sum_g
  \delta_g\lVert\theta_g\rVert^2` with :math:`w_r = R\,b_r / B` (:math:`b_r` of the batch's
  :math:`B` points on rank ``r``), so the gradient all-reduce (an average over ranks) is the
  gradient of the global batch's mean loss, whatever the shard sizes.
* **Hyper steps**: rank ``r`` computes the curvature on batches ``r, r + R, ...`` of the
  curvature pass and :func:`curvature.compute_kfac` sums the factor sums, data counts and log
  likelihoods over the ranks before the eigendecomposition (:mod:`curvature.distributed`).
  Every rank then holds the same KFAC and takes the same hyper step: the prior stays
  identical without being sent.
* **Checkpoints** are written by rank 0 only; on resume rank 0 reads its checkpoint and
  sends it to every rank (no shared file system needed). Progress is shown on rank 0 only.
* A **failed collective** (a rank died, the network failed, the process group timed out) is
  raised on the surviving ranks as :class:`RankFailedError`, naming the rank and the
  checkpoint to resume from.

With the data order made identical, a data-parallel run reproduces a one-process run to
round-off (float64: 1e-6 in the tests), except for what is random per rank: Monte-Carlo
curvature draws (a different seed per rank), dropout masks and batch-norm statistics
(computed per shard).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["DataParallel", "RankFailedError", "is_main_process", "torchrun_process_group"]

T = TypeVar("T")


class RankFailedError(RuntimeError):
    """A collective operation failed on a surviving rank: another rank died or timed out."""


def is_main_process() -> bool:
    """Whether this process writes files and shows progress (rank 0, or no process group)."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


_FAILURE_MARKERS = ("gloo", "nccl", "connection", "timed out", "timeout", "socket")


def _is_communication_failure(err: RuntimeError) -> bool:
    """Whether ``err`` comes from a collective (DDP's backward raises plain RuntimeErrors)."""
    text = str(err).lower()
    return isinstance(err, dist.DistError) or any(m in text for m in _FAILURE_MARKERS)


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel run (see the module docstring).

    Attributes:
        rank: this process's rank in the default process group.
        world_size: number of ranks ``R``.
    """

    rank: int
    world_size: int

    @classmethod
    def detect(cls) -> DataParallel | None:
        """The run of the initialised default process group, or ``None`` (one process)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return None
        return cls(dist.get_rank(), dist.get_world_size())

    @property
    def process_group(self) -> Any:
        """The process group of the collectives (the default group)."""
        return dist.group.WORLD

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0."""
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` under ``DistributedDataParallel`` (rank 0's parameters sent to all)."""
        device = next(model.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def check_batches(self, num_data: int, batch_size: int) -> None:
        """Refuse batch sizes that would leave a rank without data in some MAP step.

        Raises:
            ValueError: if ``batch_size`` or the last batch holds fewer points than ranks.
        """
        last = num_data % batch_size
        if batch_size < self.world_size or 0 < last < self.world_size:
            raise ValueError(
                f"data-parallel training on {self.world_size} ranks needs every MAP batch to "
                f"hold at least {self.world_size} points (batch size {batch_size}, last batch "
                f"{last or batch_size} of {num_data} points); choose another batch size"
            )

    def shard(self, x: Tensor | Mapping[str, Any], y: Tensor) -> tuple[Any, Tensor, float]:
        """This rank's part ``r::R`` of a global batch and its loss weight ``R b_r / B``.

        ``x`` is a tensor or a mapping of tensors (each split along its first axis).

        Raises:
            ValueError: on every rank alike, if the batch holds fewer points than ranks.
        """
        size, part = y.shape[0], slice(self.rank, None, self.world_size)
        if size < self.world_size:
            raise ValueError(
                f"data-parallel training on {self.world_size} ranks needs every MAP batch to "
                f"hold at least {self.world_size} points, got one of {size}; choose another "
                "batch size"
            )
        local: Tensor | dict[str, Any]
        if isinstance(x, Mapping):
            local = {k: v[part] if isinstance(v, Tensor) else v for k, v in x.items()}
        else:
            local = x[part]
        local_y = y[part]
        return local, local_y, self.world_size * local_y.shape[0] / size

    def check_same_batch(self, x: Tensor | Mapping[str, Any], y: Tensor, where: str) -> None:
        """Refuse, on every rank alike, a batch that is not the same on every rank.

        Data-parallel training needs every rank to see the same global batches (each then
        trains on its shard): a data loader that shuffles with an unseeded generator would
        give each rank other batches, and points would be used twice or never. Compares a
        fingerprint of ``(x, y)`` (sums and a position-weighted sum) across the ranks.

        Raises:
            ValueError: naming ``where`` and the fix.
        """
        flat = y.detach().double().reshape(-1)
        positions = torch.arange(1, flat.numel() + 1, dtype=flat.dtype, device=flat.device)
        parts = [flat.sum(), (flat * positions).sum(), flat.new_tensor(float(y.shape[0]))]
        tensors = x.values() if isinstance(x, Mapping) else [x]
        parts += [t.detach().double().sum() for t in tensors if isinstance(t, Tensor)]
        mine = torch.stack(parts)
        gathered = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(gathered, mine)
        if not all(torch.equal(g, gathered[0]) for g in gathered):
            raise ValueError(
                f"{where}: the ranks received different batches; data-parallel training needs "
                "the same batches on every rank (each trains on its shard): seed the loader's "
                "shuffling alike on every rank, e.g. DataLoader(..., shuffle=True, "
                "generator=torch.Generator().manual_seed(0))"
            )

    def curvature_batches(self, batches: Iterable[T]) -> Iterator[T]:
        """This rank's whole batches of a curvature pass: numbers ``r, r + R, r + 2R, ...``.

        The Kronecker factors are sums over data, so any partition of the batches gives the
        same sums; a rank left without a batch is refused by :func:`curvature.compute_kfac`.
        """
        for index, batch in enumerate(batches):
            if index % self.world_size == self.rank:
                yield batch

    def curvature_seed(self, seed: int | None) -> int | None:
        """A Monte-Carlo seed of its own per rank (rank 0 keeps ``seed``)."""
        return None if seed is None else seed + 7_654_321 * self.rank

    def sum_(self, tensor: Tensor) -> Tensor:
        """``tensor`` summed over the ranks, in place."""
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def from_main(self, read: Callable[[], T]) -> T:
        """``read()`` evaluated on rank 0 and sent to every rank (e.g. a checkpoint)."""
        box = [read() if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return cast(T, box[0])  # rank 0 sent read()'s value to every rank

    @contextlib.contextmanager
    def collective_errors(self, checkpoint: Path | None) -> Iterator[None]:
        """Re-raise a failed collective as :class:`RankFailedError` with what to do next."""
        try:
            yield
        except RuntimeError as err:
            if not _is_communication_failure(err):
                raise
            where = f"the last checkpoint ({checkpoint}) is intact: " if checkpoint else ""
            cause = str(err).splitlines()[0] if str(err) else repr(err)
            raise RankFailedError(
                f"rank {self.rank} of {self.world_size}: a collective operation failed, most "
                f"likely because another rank died or timed out (see its log); {where}relaunch "
                f"all ranks to resume. Cause: {cause}"
            ) from err


@contextlib.contextmanager
def torchrun_process_group(device: str, timeout_s: float = 600.0) -> Iterator[str]:
    """Join the process group ``torchrun`` describes, if launched by it; yields this rank's device.

    With ``WORLD_SIZE > 1`` in the environment (``torchrun`` sets it with ``RANK``,
    ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``) and no process group yet, initialises
    the default group, Gloo on the CPU or NCCL for ``cuda`` (then this rank uses
    ``cuda:LOCAL_RANK``), and destroys it on exit. Otherwise yields ``device`` unchanged.
    A collective that waits longer than ``timeout_s`` seconds fails (:class:`RankFailedError`).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) < 2 or dist.is_initialized():
        yield device
        return
    backend = "gloo"
    if torch.device(device).type == "cuda":
        device, backend = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}", "nccl"
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    try:
        yield device
    finally:
        dist.destroy_process_group()
