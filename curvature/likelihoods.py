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
from typing import Literal, TypeVar

import torch
from torch import Tensor

__all__ = ["CrossEntropy", "GGNType", "Gaussian", "Likelihood", "make_likelihood"]

Scalar = TypeVar("Scalar", float, Tensor)
"""A float, or a 0-dim tensor (differentiable through the likelihood's formulas)."""

GGNType = Literal["exact", "mc", "empirical"]
"""How ``Λ_n`` is represented: ``"exact"`` GGN, ``"mc"`` Monte-Carlo or ``"empirical"`` Fisher."""


class Likelihood(ABC):
    """A likelihood ``p(y | f)`` on model outputs ``f: [N, C]``.

    A subclass gives the log likelihood and the three representations of ``Λ_n`` the GGN types
    need (:meth:`exact_directions`, :meth:`sampled_directions`, :meth:`gradient`);
    :meth:`output_directions` picks one.
    """

    name: str

    @abstractmethod
    def log_likelihood(self, f: Tensor, y: Tensor) -> Tensor:
        """``Σ_n log p(y_n | f_n)`` (0-dim tensor)."""

    @abstractmethod
    def exact_directions(self, f: Tensor) -> Tensor:
        """``V: [S, N, C]`` with ``Σ_s V[s, n] V[s, n]ᵀ = Λ_n`` exactly (``f`` detached)."""

    @abstractmethod
    def sampled_directions(
        self, f: Tensor, mc_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        """``V: [k, N, C]`` with ``E[Σ_s V[s, n] V[s, n]ᵀ] = Λ_n`` (``f`` detached)."""

    @abstractmethod
    def gradient(self, f: Tensor, y: Tensor) -> Tensor:
        """``∇_f log p(y_n | f_n)``: ``[N, C]`` (``f`` detached)."""

    def output_directions(
        self,
        f: Tensor,
        y: Tensor | None,
        ggn_type: GGNType,
        mc_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Directions ``V: [S, N, C]`` with ``Σ_s V[s, n] V[s, n]ᵀ ≈ Λ_n`` (see module docs).

        Raises:
            ValueError: an unknown ``ggn_type``, or the empirical Fisher without targets.
        """
        f = f.detach()
        if ggn_type == "exact":
            return self.exact_directions(f)
        if ggn_type == "mc":
            return self.sampled_directions(f, mc_samples, generator)
        if ggn_type == "empirical":
            if y is None:
                raise ValueError(f"the empirical Fisher needs the targets y ({self.name})")
            return self.gradient(f, y).unsqueeze(0)
        raise ValueError(f"unknown ggn_type {ggn_type!r}; expected 'exact', 'mc' or 'empirical'")

    def check_output(self, f: Tensor, y: Tensor | None) -> None:
        """Raise a clear error if ``f`` or ``y`` have the wrong shape."""
        if f.ndim != 2:
            raise ValueError(
                f"{self.name} likelihood expects model outputs [N, C], got shape {tuple(f.shape)}"
            )


@dataclass(frozen=True)
class CrossEntropy(Likelihood):
    """Categorical likelihood with softmax link: ``log p(y | f) = f_y - logsumexp(f)``.

    ``Λ_n = diag(p_n) - p_n p_nᵀ`` with ``p_n = softmax(f_n)``.
    """

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

    def exact_directions(self, f: Tensor) -> Tensor:
        """``C - 1`` directions ``diag(√p_n) Q_n`` (Householder basis ``Q_n`` of ``√p_n^⊥``)."""
        p = f.softmax(-1)
        n, c = p.shape
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

    def sampled_directions(
        self, f: Tensor, mc_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        """``(onehot(ŷ_s) - p) / √k`` for ``k`` labels ``ŷ_s ~ p`` per datum."""
        p = f.softmax(-1)
        draws = torch.multinomial(p, mc_samples, replacement=True, generator=generator)
        onehot = torch.nn.functional.one_hot(draws.T, p.shape[1]).to(p.dtype)  # [k, N, C]
        return (onehot - p.unsqueeze(0)) / math.sqrt(mc_samples)

    def gradient(self, f: Tensor, y: Tensor) -> Tensor:
        """``onehot(y) - p``."""
        p = f.softmax(-1)
        return torch.nn.functional.one_hot(y, p.shape[1]).to(p.dtype) - p


@dataclass(frozen=True)
class Gaussian(Likelihood):
    r"""Homoscedastic Gaussian likelihood ``y ~ N(f, σ² I)``; ``Λ = I / σ²``.

    Over ``n`` scalar outputs with residual sum of squares ``S = Σ ||y - f||²``,

    .. math::
        \log p(y \mid f) = -\frac{S}{2σ^2} - \frac{n}{2} \log(2π σ^2),

    so ``S`` is recovered from the log likelihood at one ``σ`` (:meth:`sum_of_squares`) and the
    log likelihood of the same residuals at any other noise follows (:meth:`rescaled`); the GGN
    ``Σ J_nᵀ J_n / σ²`` changes by the factor :meth:`ggn_scale`.

    Attributes:
        sigma: observation noise standard deviation ``σ > 0``.

    Example:
        >>> f, y = torch.zeros(3, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
        >>> fitted, other = Gaussian(0.5), torch.tensor(2.0, dtype=torch.float64)
        >>> log_lik = float(fitted.log_likelihood(f, y))
        >>> math.isclose(fitted.sum_of_squares(log_lik, 6), float((y**2).sum()))
        True
        >>> at_other = fitted.rescaled(log_lik, 6, other)
        >>> bool(torch.isclose(at_other, Gaussian(2.0).log_likelihood(f, y)))
        True
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

    @staticmethod
    def from_sum_of_squares(
        sum_of_squares: Tensor | float, count: int, sigma: Tensor | float
    ) -> Tensor:
        """``-½ S / σ² - (n / 2) log(2π σ²)`` for ``S`` over ``n = count`` outputs.

        Differentiable in ``sigma`` and ``S`` when they are tensors (all-float arguments give
        a float64 tensor).
        """
        residual = -0.5 * sum_of_squares / sigma**2
        normaliser = 2 * math.pi * sigma**2
        log_normaliser = (
            torch.log(normaliser) if isinstance(normaliser, Tensor) else math.log(normaliser)
        )
        value = residual - 0.5 * count * log_normaliser
        return value if isinstance(value, Tensor) else torch.tensor(value, dtype=torch.float64)

    def log_likelihood(self, f: Tensor, y: Tensor) -> Tensor:
        """``-½ Σ ||y - f||² / σ² - (N D / 2) log(2π σ²)``."""
        return self.from_sum_of_squares(((y - f) ** 2).sum(), f.numel(), self.sigma)

    def sum_of_squares(self, log_likelihood: Scalar, count: int) -> Scalar:
        """``S = -2σ² (log p + (n / 2) log(2π σ²))``: the residuals' ``Σ ||y - f||²``.

        Args:
            log_likelihood: ``log p(y | f)`` at this ``σ`` over ``n = count`` outputs.
            count: ``n``, the number of scalar outputs (``N D``).
        """
        variance = self.sigma**2
        return -2 * variance * (log_likelihood + 0.5 * count * math.log(2 * math.pi * variance))

    def rescaled(self, log_likelihood: float, count: int, sigma: Tensor | float) -> Tensor:
        """The log likelihood of the same residuals under the noise ``sigma``.

        Args:
            log_likelihood: ``log p(y | f)`` at this ``σ`` over ``n = count`` outputs (a value:
                the result is differentiable in ``sigma`` only).
            count: ``n``, the number of scalar outputs.
            sigma: the other noise standard deviation (a tensor stays differentiable).
        """
        return self.from_sum_of_squares(self.sum_of_squares(log_likelihood, count), count, sigma)

    def ggn_scale(self, sigma: Scalar) -> Scalar:
        """``σ² / sigma²``: the factor turning the GGN at this ``σ`` into the GGN at ``sigma``."""
        return self.sigma**2 / sigma**2

    def exact_directions(self, f: Tensor) -> Tensor:
        """``e_d / σ`` for every output ``d``: ``[D, N, D]``."""
        n, d = f.shape
        eye = torch.eye(d, dtype=f.dtype, device=f.device) / self.sigma
        return eye[:, None, :].expand(d, n, d).contiguous()

    def sampled_directions(
        self, f: Tensor, mc_samples: int, generator: torch.Generator | None
    ) -> Tensor:
        """``ε / (σ √k)`` for ``k`` standard normal draws ``ε`` per datum."""
        noise = torch.randn(
            (mc_samples, *f.shape), dtype=f.dtype, device=f.device, generator=generator
        )
        return noise / (self.sigma * math.sqrt(mc_samples))

    def gradient(self, f: Tensor, y: Tensor) -> Tensor:
        """``(y - f) / σ²``."""
        return (y - f) / self.sigma**2


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
