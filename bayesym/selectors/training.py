r"""The training loop every selector shares: a seeded, fractional number of epochs.

:func:`train_epochs` makes :math:`\lceil e N / B\rceil` optimiser steps of batch size ``B`` for
``e`` epochs of ``N`` images (``e`` may be fractional, e.g. EquiNAS's half-epoch children),
drawing batches from a stream of seeded permutations, one per epoch, so the same seed gives the
same batches. Each batch is charged to the :class:`~bayesym.selectors.budget.BudgetMeter`
before its step; when the meter refuses, training stops there (an overrun of at most one
batch) and the result says so. :func:`evaluate_model` scores a model on a split and counts
its forward passes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bayesym.data.image_dataset import ImageDataset
from bayesym.marglik.evaluation import evaluate
from bayesym.seeds import indexed_seed
from bayesym.selectors.budget import BudgetExhausted, BudgetMeter
from bayesym.selectors.config_checks import (
    check_fields,
    check_one_of,
    check_positive,
    check_positive_int,
)

__all__ = [
    "OptimizerSettings",
    "TrainingStats",
    "evaluate_model",
    "make_optimizer",
    "seeded_batches",
    "train_epochs",
]


@dataclass(frozen=True)
class OptimizerSettings:
    """The optimiser of a training run.

    Attributes:
        name: ``"adam"`` or ``"sgd"``.
        lr: learning rate.
        momentum: SGD momentum (ignored by Adam).
        batch_size: mini-batch size.
    """

    name: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    batch_size: int = 64

    def __post_init__(self) -> None:
        check_one_of(self, "name", ("adam", "sgd"))
        check_positive(self, "lr")
        check_fields(self, ("momentum",), lambda v: 0 <= v < 1, "must lie in [0, 1)")
        check_positive_int(self, "batch_size")


def make_optimizer(
    parameters: Iterator[nn.Parameter] | list[nn.Parameter], settings: OptimizerSettings
) -> torch.optim.Optimizer:
    """A fresh optimiser over ``parameters``."""
    params = [p for p in parameters if p.requires_grad]
    if settings.name == "adam":
        return torch.optim.Adam(params, lr=settings.lr)
    return torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum)


@dataclass(frozen=True)
class TrainingStats:
    """What :func:`train_epochs` did.

    Attributes:
        steps: optimiser steps taken.
        images: training image passes made.
        mean_loss: mean training loss per image (NaN if no step was taken).
        accuracy: training accuracy over the images seen (NaN if none).
        stopped_by_budget: whether the meter stopped training early.
    """

    steps: int
    images: int
    mean_loss: float
    accuracy: float
    stopped_by_budget: bool


def seeded_batches(size: int, batch_size: int, images: int, seed: int) -> Iterator[Tensor]:
    """Index batches covering ``images`` draws from seeded permutations of ``range(size)``.

    Epoch ``e`` of the stream is the permutation drawn with seed ``(seed, e)``; the last batch
    is shorter when ``images`` is not a multiple of ``batch_size``.
    """
    epoch, position, order = 0, 0, None
    remaining = images
    while remaining > 0:
        if order is None or position >= size:
            generator = torch.Generator().manual_seed(indexed_seed(seed, epoch))
            order, position, epoch = torch.randperm(size, generator=generator), 0, epoch + 1
        take = min(batch_size, remaining, size - position)
        yield order[position : position + take]
        position += take
        remaining -= take


def train_epochs(
    model: nn.Module,
    data: ImageDataset,
    *,
    epochs: float,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    seed: int,
    meter: BudgetMeter | None = None,
    penalty: Callable[[], Tensor] | None = None,
    step_hook: Callable[[int], None] | None = None,
) -> TrainingStats:
    r"""Train ``model`` for ``epochs`` (fractional) epochs of ``data`` with cross-entropy.

    The loss per step is the batch's mean cross-entropy plus ``penalty()`` (e.g. a prior's
    :math:`\tfrac{1}{2N}\sum_g\delta_g\lVert\theta_g\rVert^2`). Batches are moved to the
    model's device; the model is in train mode during and after.

    Args:
        model: the network.
        data: the training split.
        epochs: epochs to train (``> 0``; ``ceil(epochs * N)`` image passes).
        optimizer: the optimiser (its state carries over between calls).
        batch_size: mini-batch size.
        seed: seed of the batch order.
        meter: charged before every batch; training stops when it refuses.
        penalty: optional extra loss term, called once per step.
        step_hook: called with the step index after every optimiser step.
    """
    if not math.isfinite(epochs) or epochs <= 0:
        raise ValueError(f"train_epochs: epochs must be positive and finite, got {epochs}")
    device = next(model.parameters()).device
    total = math.ceil(epochs * len(data))
    sums = torch.zeros(2, dtype=torch.float64, device=device)
    steps = images = 0
    stopped = False
    model.train()
    for index in seeded_batches(len(data), batch_size, total, seed):
        if meter is not None:
            try:
                meter.charge(len(index))
            except BudgetExhausted:
                stopped = True
                break
        x = data.images[index.to(data.images.device)].to(device)
        y = data.labels[index.to(data.labels.device)].to(device)
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        if penalty is not None:
            loss = loss + penalty()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            sums[0] += loss.double() * len(index)
            sums[1] += (logits.argmax(-1) == y).sum()
        steps, images = steps + 1, images + len(index)
        if step_hook is not None:
            step_hook(steps)
    loss_sum, correct = sums.tolist()
    return TrainingStats(
        steps=steps,
        images=images,
        mean_loss=loss_sum / images if images else math.nan,
        accuracy=correct / images if images else math.nan,
        stopped_by_budget=stopped,
    )


def evaluate_model(
    model: nn.Module, data: ImageDataset, meter: BudgetMeter | None = None, batch_size: int = 500
) -> dict[str, float]:
    """Accuracy and mean NLL of ``model`` on ``data`` (eval mode); counted as eval passes."""
    if meter is not None:
        meter.count_eval(len(data))
    return evaluate(model, data, batch_size=batch_size)
