r"""Evaluate a trained model: mean negative log likelihood and accuracy over a data set.

The NLL is the likelihood's own (:mod:`curvature.likelihoods`):
:math:`-\frac1N\sum_n \log p(y_n \mid f(x_n))`, softmax cross-entropy for classification and
:math:`\mathcal N(y; f, \sigma^2 I)` for regression. The model is put in eval mode and its
previous mode restored afterwards.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(2, 3)
    >>> metrics = evaluate(model, (torch.randn(10, 2), torch.randint(0, 3, (10,))))
    >>> sorted(metrics)
    ['accuracy', 'nll']
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import torch
from torch import Tensor, nn

from curvature.likelihoods import make_likelihood

__all__ = ["TrainingData", "as_tensors", "evaluate", "tensor_batches"]

TrainingData = tuple[Tensor, Tensor]
"""``(x [N, ...], y [N] or [N, D])``, or any object with ``.images`` and ``.labels``."""


def as_tensors(data: TrainingData | Any) -> TrainingData:
    """``(x, y)`` of a tensor pair or of a dataset with ``.images`` and ``.labels``.

    Raises:
        TypeError: for anything else (the message names the type received).
    """
    if hasattr(data, "images") and hasattr(data, "labels"):
        return data.images, data.labels
    if isinstance(data, tuple) and len(data) == 2:
        return data
    raise TypeError(f"expected (x, y) tensors or a dataset with .images/.labels, got {type(data)}")


def tensor_batches(
    x: Tensor, y: Tensor, size: int, seed: int | None
) -> Iterator[tuple[Tensor, Tensor]]:
    """Batches of one epoch; shuffled with a generator seeded by ``seed`` (None: in order)."""
    n = x.shape[0]
    order = (
        None if seed is None else torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    )
    for start in range(0, n, size):
        index = slice(start, start + size) if order is None else order[start : start + size]
        yield x[index], y[index]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: TrainingData | Any,
    *,
    likelihood: Literal["classification", "regression"] = "classification",
    sigma: float = 1.0,
    batch_size: int = 256,
) -> dict[str, float]:
    """Mean NLL (and, for classification, accuracy) of ``model`` on ``data`` in eval mode.

    Args:
        model: the network; batches are moved to the device of its first parameter.
        data: ``(x, y)`` tensors or a dataset with ``.images`` and ``.labels``.
        likelihood: ``"classification"`` or ``"regression"``.
        sigma: Gaussian noise of the regression likelihood.
        batch_size: evaluation batch size (changes no result beyond round-off).

    Returns:
        ``{"nll": ..., "accuracy": ...}`` (no accuracy for regression).
    """
    x, y = as_tensors(data)
    like = make_likelihood(likelihood, sigma)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_nll, correct = 0.0, 0
    try:
        for xb, yb in tensor_batches(x, y, batch_size, None):
            xb, yb = xb.to(device), yb.to(device)
            f = model(xb)
            total_nll -= float(like.log_likelihood(f, yb))
            if likelihood == "classification":
                correct += int((f.argmax(-1) == yb).sum())
    finally:
        model.train(was_training)
    out = {"nll": total_nll / x.shape[0]}
    if likelihood == "classification":
        out["accuracy"] = correct / x.shape[0]
    return out
