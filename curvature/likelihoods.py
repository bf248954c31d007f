"""Likelihoods: log-likelihood values and the square roots of their output Hessians.

The GGN of a model ``f`` is ``H = Σ_n J_nᵀ Λ_n J_n`` with ``Λ_n = -∇²_f log p(y_n | f(x_n))``.
The engine never forms ``Λ_n``: it back-propagates ``S`` *output directions* ``v_{s,n}`` with
``Σ_s v_{s,n} v_{s,n}ᵀ = Λ_n`` (exactly, or in expectation for Monte-Carlo):

* ``"exact"``: softmax cross-entropy ``Λ = diag(p) - p pᵀ`` has rank ``C - 1``; with ``Q_n`` an
  orthonormal basis of ``√p_n^⊥`` (a Householder reflection), ``V_n = diag(√p_n) Q_n`` gives
  ``C - 1`` directions (one fewer backward pass than the textbook ``C``). Gaussian: ``e_d / σ``.
* ``"mc"``: ``k`` samples ``(onehot(ŷ) - p) / √k`` with ``ŷ ~ p`` (Gaussian: ``ε / (σ √k)``).
* ``"empirical"``: the observed gradient ``∇_f log p(y | f)`` (one direction): empirical Fisher.

All directions are returned as ``[S, N, C]``.

Example:
    >>> import torch
    >>> f = torch.randn(4, 3, dtype=torch.float64)
    >>> v = CrossEntropy().output_directions(f, None, "exact")
    >>> p = f.softmax(-1)
    >>> lam = torch.einsum("snc,snd->ncd", v, v)
    >>> bool(torch.allclose(lam, torch.diag_embed(p) - p[:, :, None] * p[:, None, :]))
    True
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = ["CrossEntropy", "GGNType", "Gaussian", "Likelihood", "make_likelihood"]

GGNType = Literal["exact", "mc", "empirical"]
"""How ``Λ_n`` is represented: ``"exact"`` GGN, ``"mc"`` Monte-Carlo or ``"empirical"`` Fisher."""


class Likelihood(ABC):
    """A likelihood ``p(y | f)`` on model outputs ``f: [N, C]``."""

    name: str

    @abstractmethod
    def log_likelihood(self, f: Tensor, y: Tensor) -> Tensor:
        """``Σ_n log p(y_n | f_n)`` (0-dim tensor)."""

    @abstractmethod
    def output_directions(
        self,
        f: Tensor,
        y: Tensor | None,
        ggn_type: GGNType,
        mc_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Directions ``V: [S, N, C]`` with ``Σ_s V[s, n] V[s, n]ᵀ ≈ Λ_n`` (see module docs)."""

    def check_output(self, f: Tensor, y: Tensor | None) -> None:
        """Raise a clear error if ``f`` or ``y`` have the wrong shape."""
        if f.ndim != 2:
            raise ValueError(
                f"{self.name} likelihood expects model outputs [N, C], got shape {tuple(f.shape)}"
            )


@dataclass(frozen=True)
class CrossEntropy(Likelihood):
    """Categorical likelihood with softmax link: ``log p(y | f) = f_y - logsumexp(f)``."""

    name: str = "classification"

    def check_output(self, f: Tensor, y: Tensor | None) -> None:
        """Outputs ``[N, C]`` logits, labels ``[N]`` integers in ``[0, C)``."""
        super().check_output(f, y)
        if y is None:
            return
        if y.shape != f.shape[:1]:
            raise ValueError(
                f"classification labels must have shape [N] = {tuple(f.shape[:1])}, "
                f"got {tuple(y.shape)}"
            )
        if y.dtype.is_floating_point or y.dtype == torch.bool:
            raise ValueError(f"classification labels must be integers, got dtype {y.dtype}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= f.shape[1]):
            raise ValueError(
                f"labels must lie in [0, {f.shape[1]}), got range [{int(y.min())}, {int(y.max())}]"
            )

    def log_likelihood(self, f: Tensor, y: Tensor) -> Tensor:
        """``-Σ_n CE(f_n, y_n)``."""
        return -torch.nn.functional.cross_entropy(f, y, reduction="sum")

    def output_directions(
        self,
        f: Tensor,
        y: Tensor | None,
        ggn_type: GGNType,
        mc_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Square-root directions of ``Λ_n = diag(p_n) - p_n p_nᵀ``; shape ``[S, N, C]``."""
        p = f.detach().softmax(-1)
        n, c = p.shape
        if ggn_type == "exact":
            if c == 1:
                return p.new_zeros(0, n, 1)
            sqrt_p = p.sqrt()
            # Householder H = I - 2 u uᵀ / uᵀu with u = √p + e_1 maps √p to -e_1, so its columns
            # 2..C are an orthonormal basis of √p^⊥ (uᵀu = 2 + 2√p_1 >= 2: no cancellation).
            u = sqrt_p.clone()
            u[:, 0] += 1.0
            scale = 2.0 / (u * u).sum(-1, keepdim=True)  # [N, 1]
            eye = torch.eye(c, dtype=p.dtype, device=p.device)[:, 1:]  # [C, C-1]
            q = eye.unsqueeze(0) - scale[:, :, None] * u[:, :, None] * u[:, None, 1:]
            return (sqrt_p[:, :, None] * q).permute(2, 0, 1)  # [C-1, N, C]
        if ggn_type == "mc":
            draws = torch.multinomial(p, mc_samples, replacement=True, generator=generator)
            onehot = torch.nn.functional.one_hot(draws.T, c).to(p.dtype)  # [k, N, C]
            return (onehot - p.unsqueeze(0)) / math.sqrt(mc_samples)
        if ggn_type == "empirical":
            if y is None:
                raise ValueError("the empirical Fisher needs labels y")
            onehot = torch.nn.functional.one_hot(y, c).to(p.dtype)
            return (onehot - p).unsqueeze(0)
        raise ValueError(f"unknown ggn_type {ggn_type!r}; expected 'exact', 'mc' or 'empirical'")


@dataclass(frozen=True)
class Gaussian(Likelihood):
    """Homoscedastic Gaussian likelihood ``y ~ N(f, σ² I)``.

    Attributes:
        sigma: observation noise standard deviation ``σ > 0``.
    """

    sigma: float = 1.0
    name: str = "regression"

    def __post_init__(self) -> None:
        if not math.isfinite(self.sigma) or self.sigma <= 0:
            raise ValueError(f"Gaussian noise sigma must be positive and finite, got {self.sigma}")

    def check_output(self, f: Tensor, y: Tensor | None) -> None:
        """Outputs ``[N, D]``; targets of the same shape."""
        super().check_output(f, y)
        if y is not None and y.shape != f.shape:
            raise ValueError(
                f"regression targets must match the outputs {tuple(f.shape)}, got {tuple(y.shape)}"
            )

    def log_likelihood(self, f: Tensor, y: Tensor) -> Tensor:
        """``-½ Σ ||y - f||² / σ² - (N D / 2) log(2π σ²)``."""
        return -0.5 * ((y - f) ** 2).sum() / self.sigma**2 - 0.5 * f.numel() * math.log(
            2 * math.pi * self.sigma**2
        )

    def output_directions(
        self,
        f: Tensor,
        y: Tensor | None,
        ggn_type: GGNType,
        mc_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Square-root directions of ``Λ = I / σ²``; shape ``[S, N, D]``."""
        f = f.detach()
        n, d = f.shape
        if ggn_type == "exact":
            eye = torch.eye(d, dtype=f.dtype, device=f.device) / self.sigma
            return eye[:, None, :].expand(d, n, d).contiguous()
        if ggn_type == "mc":
            noise = torch.randn(
                (mc_samples, n, d), dtype=f.dtype, device=f.device, generator=generator
            )
            return noise / (self.sigma * math.sqrt(mc_samples))
        if ggn_type == "empirical":
            if y is None:
                raise ValueError("the empirical Fisher needs targets y")
            return ((y - f) / self.sigma**2).unsqueeze(0)
        raise ValueError(f"unknown ggn_type {ggn_type!r}; expected 'exact', 'mc' or 'empirical'")


def make_likelihood(likelihood: str | Likelihood, sigma: float = 1.0) -> Likelihood:
    """Resolve ``"classification"`` / ``"regression"`` (or pass a :class:`Likelihood` through)."""
    if isinstance(likelihood, Likelihood):
        return likelihood
    if likelihood == "classification":
        return CrossEntropy()
    if likelihood == "regression":
        return Gaussian(sigma)
    raise ValueError(
        f"unknown likelihood {likelihood!r}; expected 'classification', 'regression' or a "
        "curvature.Likelihood instance"
    )
