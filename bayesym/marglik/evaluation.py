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

from typing import Literal

import torch
from torch import Tensor, nn

from bayesym.marglik.data import (
    DataSource,
    TensorData,
    TrainingData,
    check_batch,
    check_outputs,
    tensor_batches,
    training_data,
)
from curvature.likelihoods import make_likelihood

__all__ = ["TrainingData", "evaluate", "tensor_batches"]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: TrainingData | DataSource,
    *,
    likelihood: Literal["classification", "regression"] = "classification",
    sigma: float = 1.0,
    batch_size: int = 256,
) -> dict[str, float]:
    """Mean NLL (and, for classification, accuracy) of ``model`` on ``data`` in eval mode.

    Args:
        model: the network; batches are moved to the device of its first parameter.
        data: any data :class:`~bayesym.marglik.MarglikTrainer` trains on (``(x, y)``
            tensors, ``.images``/``.labels``, a ``Dataset``, a ``DataLoader``, batches; see
            :mod:`bayesym.marglik.data`), or a source made by
            :func:`~bayesym.marglik.data.training_data`.
        likelihood: ``"classification"`` or ``"regression"``.
        sigma: Gaussian noise of the regression likelihood.
        batch_size: evaluation batch size (changes no result beyond round-off).

    Returns:
        ``{"nll": ..., "accuracy": ...}`` (no accuracy for regression).
    """
    source = training_data(data, "evaluation")
    like = make_likelihood(likelihood, sigma)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_nll, correct, count = 0.0, 0, 0
    try:
        for step, (xb, yb) in enumerate(source.batches(batch_size, None)):
            where = f"{getattr(source, 'what', 'evaluation')} data, batch {step}"
            if not isinstance(source, TensorData):  # tensors: checked by the trainer's fit
                check_batch(xb, yb, likelihood, where)
            xb = xb.to(device) if isinstance(xb, Tensor) else xb
            yb = yb.to(device)
            f = model(xb)
            if not isinstance(source, TensorData):
                check_outputs(f, yb, likelihood, where)
            total_nll -= float(like.log_likelihood(f, yb))
            count += yb.shape[0]
            if likelihood == "classification":
                correct += int((f.argmax(-1) == yb).sum())
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluation data: no points")
    out = {"nll": total_nll / count}
    if likelihood == "classification":
        out["accuracy"] = correct / count
    return out
