r"""Sum the curvature of data shards held by several processes (``torch.distributed``).

The Laplace GGN is a sum over data, so a data set split into shards, one per rank,
has the GGN :math:`H = \sum_r H_r`. KFAC keeps that structure up to the normalisation of the
input factor: per block, every rank holds the *sums*

* :math:`\hat A_r = \sum_{n \in r} a_n a_n^\top` with its count :math:`c_r` (``A`` is the average
  :math:`\hat A / c` of :mod:`curvature.engine`),
* :math:`B_r = \sum_{n \in r} \sum_k g_{nk} g_{nk}^\top` (already a sum),

and the data count :math:`N_r` and log likelihood :math:`\sum_{n \in r} \log p(y_n | f_n)`.
:func:`all_reduce_sums` adds each of them over the ranks (one all-reduce per dtype and
device, of all tensors packed into one buffer) *before* the factors are normalised and
eigendecomposed, so every rank ends with the same KFAC as one process that saw all the data:
the same factors, eigendecompositions, log marginal likelihood and hyper step.

``compute_kfac(..., process_group=dist.group.WORLD)`` does this; a process group must have
been initialised (``torch.distributed.init_process_group``, e.g. by ``torchrun``). Gloo
reduces CPU tensors, NCCL CUDA tensors: the sums are reduced where the factors live.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["all_reduce_sums", "check_every_rank_has_data", "world_size"]


def world_size(process_group: Any = None) -> int:
    """Number of ranks of ``process_group`` (``None``: the default group), 1 if none exists."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(process_group)


def all_reduce_sums(tensors: Sequence[Tensor], process_group: Any = None) -> int:
    """Replace every tensor by its sum over the ranks, in place; returns the bytes reduced.

    Tensors of one dtype and device are packed into one flat buffer and reduced in one call
    (a few calls per hyper step, however many blocks). Every rank must pass tensors of the
    same shapes, dtypes and devices in the same order.
    """
    groups: dict[tuple[torch.dtype, torch.device], list[Tensor]] = defaultdict(list)
    for t in tensors:
        groups[(t.dtype, t.device)].append(t)
    total = 0
    for members in groups.values():
        flat = torch.cat([t.reshape(-1) for t in members])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=process_group)
        offset = 0
        for t in members:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()
        total += flat.numel() * flat.element_size()
    return total


def check_every_rank_has_data(
    num_data: int, device: torch.device, process_group: Any = None
) -> int:
    """The data count summed over the ranks; every rank raises if any rank saw no data.

    Collective (every rank calls it), so that a rank with an empty shard fails together
    with the others instead of leaving them waiting in the next all-reduce.

    Raises:
        ValueError: naming the ranks whose shard was empty.
    """
    counts = [
        torch.zeros((), dtype=torch.int64, device=device) for _ in range(world_size(process_group))
    ]
    dist.all_gather(
        counts, torch.tensor(num_data, dtype=torch.int64, device=device), group=process_group
    )
    per_rank = [int(c) for c in counts]
    empty = [r for r, c in enumerate(per_rank) if c == 0]
    if empty:
        raise ValueError(
            f"ranks {empty} received no curvature data (data per rank: {per_rank}); give every "
            "rank at least one datum (more data or fewer processes)"
        )
    return sum(per_rank)
