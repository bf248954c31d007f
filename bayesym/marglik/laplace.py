r"""The Laplace approximation to the log marginal likelihood with a KFAC GGN (paper Eq. 9).

.. math::
    \log p(\mathcal{D} \mid \eta) \approx \log p(\mathcal{D} \mid \theta_*)
    + \sum_g \Big[\tfrac{P_g}{2} \log \delta_g - \tfrac{\delta_g}{2} \lVert\theta_{*,g}\rVert^2\Big]
    - \tfrac12 \log\det\big(H + \operatorname{diag}(\delta)\big)

(the :math:`\pm\tfrac{P}{2}\log 2\pi` of prior and Laplace normaliser cancel). :math:`H` is the
block-diagonal KFAC GGN from :mod:`curvature`, so the log-determinant is a sum over blocks of
:math:`\sum_{ij} \log(\lambda^A_i \lambda^B_j + \delta_g)` with the block's group precision.
Parameters that no block covers contribute :math:`P \log \delta_g` (zero curvature).

For a Gaussian likelihood the noise :math:`\sigma` can be a hyperparameter too: the GGN scales
as :math:`\sigma^{-2}` and
:math:`\log\det(sH + \delta I) = P\log s + \log\det(H + \tfrac{\delta}{s} I)` keeps
everything differentiable from one eigendecomposition.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bayesym.priors import GaussianPrior
from curvature import KFAC, Gaussian

__all__ = ["effective_parameters_per_group", "log_marginal_likelihood"]


def log_marginal_likelihood(
    kfac: KFAC,
    prior: GaussianPrior,
    model: nn.Module,
    *,
    sigma: Tensor | float | None = None,
    data_scale: float = 1.0,
    dtype: torch.dtype | None = None,
    squared_norms: Tensor | None = None,
) -> Tensor:
    r"""Laplace log marginal likelihood at the model's current parameters :math:`\theta_*`.

    Differentiable w.r.t. ``prior.log_precision`` and (regression) ``sigma``; the parameters
    themselves enter detached (the marglik is a function of the hyperparameters at the mode).

    Args:
        kfac: curvature of ``model`` at :math:`\theta_*` (from :func:`curvature.compute_kfac`).
        prior: the Gaussian prior over ``model``'s parameter groups.
        model: the network (for :math:`\lVert\theta_g\rVert^2`).
        sigma: Gaussian noise std to evaluate at (regression only); default: the one the
            curvature was computed with.
        data_scale: ``N / M`` when the curvature was computed on ``M`` of ``N`` training points:
            the log likelihood and the GGN are scaled up to the full data set.
        dtype: eigendecompose the factors in this dtype (e.g. ``torch.float64``).
        squared_norms: ``prior.squared_norms(model)`` if already computed (the hyper step
            evaluates the marglik many times at the same parameters); ``model`` is then unused.

    Returns:
        0-dim tensor (nats, summed over the data).

    Raises:
        ValueError: if a block spans prior groups or covers a parameter without prior.
    """
    precisions = prior.precisions
    norms = prior.squared_norms(model).detach() if squared_norms is None else squared_norms
    numels = prior.numels
    log_lik, scale = _scaled_likelihood(kfac, precisions, sigma, data_scale)
    groups = prior.block_groups(kfac)
    deltas = precisions[torch.tensor(groups, device=precisions.device)] / scale
    covered = [0] * len(prior.groups)
    for g, block in zip(groups, kfac.blocks, strict=True):
        covered[g] += block.numel
    uncovered = numels - torch.tensor(covered, dtype=numels.dtype, device=numels.device)
    logdet = (
        kfac.numel * torch.log(scale)
        + kfac.block_logdets(deltas, dtype).sum()
        + (uncovered * prior.log_precision).sum()
    )
    return (
        log_lik
        + 0.5 * (numels * prior.log_precision).sum()
        - 0.5 * (precisions * norms).sum()
        - 0.5 * logdet
    )


def effective_parameters_per_group(
    kfac: KFAC,
    prior: GaussianPrior,
    *,
    sigma: Tensor | float | None = None,
    data_scale: float = 1.0,
    dtype: torch.dtype | None = None,
) -> dict[str, Tensor]:
    r"""Effective number of parameters per prior group (App. D.2).

    :math:`\gamma_g = \sum_{b \in g} \sum_{\lambda} \lambda / (\lambda + \delta_g)` over the
    eigenvalues :math:`\lambda` of each block of the (noise- and data-scaled) GGN. Uncovered
    parameters contribute 0.

    Returns:
        group name -> 0-dim tensor, for every group of ``prior``.
    """
    precisions = prior.precisions
    _, scale = _scaled_likelihood(kfac, precisions, sigma, data_scale)
    groups = torch.tensor(prior.block_groups(kfac), device=precisions.device)
    gammas = kfac.block_effective_parameters(precisions[groups] / scale, dtype)
    totals = precisions.new_zeros(len(prior.groups)).index_add(0, groups, gammas.to(precisions))
    return dict(zip(prior.names, totals.unbind(), strict=True))


def _scaled_likelihood(
    kfac: KFAC, like: Tensor, sigma: Tensor | float | None, data_scale: float
) -> tuple[Tensor, Tensor]:
    """Log likelihood at ``sigma`` scaled to the full data, and the GGN's scale factor."""
    if not math.isfinite(data_scale) or data_scale <= 0:
        raise ValueError(f"data_scale must be positive and finite, got {data_scale}")
    log_lik = kfac.log_likelihood.to(like)
    scale = torch.ones((), dtype=like.dtype, device=like.device)
    if sigma is not None:
        if not isinstance(kfac.likelihood, Gaussian):
            raise ValueError("sigma is only a hyperparameter of the Gaussian likelihood")
        sigma = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
        fitted = kfac.likelihood.sigma
        count = kfac.num_data * kfac.output_dim
        # Σ(y - f)² recovered from the log likelihood at the fitted noise.
        sse = -2 * fitted**2 * (float(log_lik) + 0.5 * count * math.log(2 * math.pi * fitted**2))
        log_lik = -0.5 * sse / sigma**2 - 0.5 * count * torch.log(2 * math.pi * sigma**2)
        scale = fitted**2 / sigma**2
    return data_scale * log_lik, data_scale * scale
