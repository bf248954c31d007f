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
import weakref
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from bayesym.priors import GaussianPrior
from curvature import KFAC, Gaussian

__all__ = ["BlockLayout", "effective_parameters_per_group", "log_marginal_likelihood"]


@dataclass(frozen=True)
class BlockLayout:
    """What the Laplace marglik needs from a KFAC and a prior that the hyperparameters leave fixed.

    Built once per hyper step (:meth:`of`) and passed to every evaluation: otherwise each
    evaluation maps the blocks to their prior groups in Python and copies three small host
    tensors to the prior's device, and on a GPU each such copy waits for all queued kernels.

    Attributes:
        groups: ``[B]`` index of the prior group of every curvature block (int64).
        uncovered: ``[G]`` number of parameters of each group that no block covers.
        log_likelihood: ``kfac.log_likelihood`` in the prior's dtype.

    A layout belongs to the one KFAC and prior it was built from (its log likelihood is that
    fit's): passing it with any other is an error, even with the same block structure.
    """

    groups: Tensor
    uncovered: Tensor
    log_likelihood: Tensor
    _kfac: weakref.ref = field(repr=False)
    _prior: weakref.ref = field(repr=False)

    @classmethod
    def of(cls, kfac: KFAC, prior: GaussianPrior) -> BlockLayout:
        """The layout of ``kfac``'s blocks over ``prior``'s groups, on the prior's device.

        Raises:
            ValueError: if a block spans prior groups or covers a parameter without prior.
        """
        like = prior.precisions
        groups = prior.block_groups(kfac)
        covered = [0] * len(prior.groups)
        for g, block in zip(groups, kfac.blocks, strict=True):
            covered[g] += block.numel
        numels = prior.numels
        return cls(
            groups=torch.tensor(groups, dtype=torch.int64, device=like.device),
            uncovered=numels - torch.tensor(covered, dtype=numels.dtype, device=numels.device),
            log_likelihood=kfac.log_likelihood.detach().to(like),
            _kfac=weakref.ref(kfac),
            _prior=weakref.ref(prior),
        )

    def check(self, kfac: KFAC, prior: GaussianPrior) -> None:
        """Raise unless built from this very ``kfac`` and ``prior``, on the prior's device."""
        for what, ref, obj in (("KFAC", self._kfac, kfac), ("prior", self._prior, prior)):
            if ref() is not obj:
                raise ValueError(
                    f"the layout was built for another {what} than the one passed (a layout "
                    "holds its fit's log likelihood); build it with BlockLayout.of(kfac, prior)"
                )
        if self.groups.device != prior.precisions.device:
            raise ValueError(
                f"the layout is on {self.groups.device}, the prior on "
                f"{prior.precisions.device}; rebuild it after moving the prior"
            )


def log_marginal_likelihood(
    kfac: KFAC,
    prior: GaussianPrior,
    model: nn.Module,
    *,
    sigma: Tensor | float | None = None,
    data_scale: float = 1.0,
    dtype: torch.dtype | None = None,
    squared_norms: Tensor | None = None,
    layout: BlockLayout | None = None,
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
        layout: ``BlockLayout.of(kfac, prior)`` if already built (same reason).

    Returns:
        0-dim tensor (nats, summed over the data).

    Raises:
        ValueError: if a block spans prior groups or covers a parameter without prior.
    """
    precisions = prior.precisions
    norms = prior.squared_norms(model).detach() if squared_norms is None else squared_norms
    numels = prior.numels
    layout = _layout(layout, kfac, prior)
    log_lik, scale = _scaled_likelihood(kfac, layout.log_likelihood, sigma, data_scale)
    deltas = precisions[layout.groups] / scale
    logdet = (
        kfac.numel * torch.log(scale)
        + kfac.block_logdets(deltas, dtype).sum()
        + (layout.uncovered * prior.log_precision).sum()
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
    layout: BlockLayout | None = None,
) -> dict[str, Tensor]:
    r"""Effective number of parameters per prior group (App. D.2).

    :math:`\gamma_g = \sum_{b \in g} \sum_{\lambda} \lambda / (\lambda + \delta_g)` over the
    eigenvalues :math:`\lambda` of each block of the (noise- and data-scaled) GGN. Uncovered
    parameters contribute 0. ``layout``: ``BlockLayout.of(kfac, prior)`` if already built.

    Returns:
        group name -> 0-dim tensor, for every group of ``prior``.
    """
    precisions = prior.precisions
    layout = _layout(layout, kfac, prior)
    _, scale = _scaled_likelihood(kfac, layout.log_likelihood, sigma, data_scale)
    groups = layout.groups
    gammas = kfac.block_effective_parameters(precisions[groups] / scale, dtype)
    totals = precisions.new_zeros(len(prior.groups)).index_add(0, groups, gammas.to(precisions))
    return dict(zip(prior.names, totals.unbind(), strict=True))


def _layout(layout: BlockLayout | None, kfac: KFAC, prior: GaussianPrior) -> BlockLayout:
    """``layout`` checked against ``kfac`` and ``prior``, or a new one if none was passed."""
    if layout is None:
        return BlockLayout.of(kfac, prior)
    layout.check(kfac, prior)
    return layout


def _scaled_likelihood(
    kfac: KFAC, log_lik: Tensor, sigma: Tensor | float | None, data_scale: float
) -> tuple[Tensor, Tensor]:
    """Log likelihood at ``sigma`` scaled to the full data, and the GGN's scale factor.

    ``log_lik``: ``kfac.log_likelihood`` on the device and in the dtype of the result.
    """
    if not math.isfinite(data_scale) or data_scale <= 0:
        raise ValueError(f"data_scale must be positive and finite, got {data_scale}")
    like = log_lik
    scale = torch.ones((), dtype=like.dtype, device=like.device)
    if sigma is not None:
        if not isinstance(kfac.likelihood, Gaussian):
            raise ValueError("sigma is only a hyperparameter of the Gaussian likelihood")
        sigma = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
        count = kfac.num_data * kfac.output_dim
        log_lik = kfac.likelihood.rescaled(float(log_lik), count, sigma)
        scale = kfac.likelihood.ggn_scale(sigma)
    return data_scale * log_lik, data_scale * scale
