"""Curvature blocks: the pieces of a block-diagonal GGN approximation.

A block approximates the GGN restricted to a set of parameter entries (one or more
:class:`ParameterSlice` s, concatenated in order, each a range of a parameter's row-major
flattening). Two structures exist and a block knows its own:

* :class:`KroneckerBlock` — ``F_1 ⊗ F_2 (⊗ ...)``, e.g. ``B ⊗ A`` for a weight ``[out, in]``;
* :class:`DenseBlock` — one PSD matrix, e.g. the output factor of a bias, or the exact GGN of a
  handful of scalar parameters.

Both expose the eigenvalues of their factors, from which :mod:`curvature.linalg` computes
``log det(H + δ I)`` and effective parameter counts with one prior precision per block.

Example:
    >>> import torch
    >>> from curvature.factors import DenseFactor
    >>> a, b = DenseFactor(torch.eye(2)), DenseFactor(2 * torch.eye(3))
    >>> block = KroneckerBlock("fc.weight", (ParameterSlice("fc.weight", 0, 6),), (b, a))
    >>> block.numel, float(block.logdet(torch.tensor(1.0)))  # 6 log(3)
    (6, 6.591673...)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
from torch import Tensor

from curvature.factors import DenseFactor, EigenFactor, Factor
from curvature.linalg import kron_effective_parameters, kron_logdet

__all__ = ["CurvatureBlock", "DenseBlock", "KroneckerBlock", "ParameterSlice"]


@dataclass(frozen=True)
class ParameterSlice:
    """Entries ``[start, stop)`` of the row-major flattening of a model parameter.

    Attributes:
        name: qualified parameter name, as in ``model.named_parameters()``.
        start: first flat index covered.
        stop: one past the last flat index covered.
    """

    name: str
    start: int
    stop: int

    @property
    def numel(self) -> int:
        """Number of entries covered."""
        return self.stop - self.start


@dataclass(eq=False)
class CurvatureBlock(ABC):
    """A PSD block of the GGN approximation over the entries ``params`` (in order).

    Attributes:
        name: unique block name (``"<module>.<parameter>"`` or with a suffix such as ``.g0``).
        params: the parameter entries this block covers, concatenated in order.
    """

    name: str
    params: tuple[ParameterSlice, ...]
    _eigen: dict = field(default_factory=dict, init=False, repr=False)

    @property
    @abstractmethod
    def factors(self) -> tuple[Factor, ...]:
        """The factors; the dense block is their Kronecker product."""

    @property
    def numel(self) -> int:
        """Number of parameter entries covered (side length of the dense block)."""
        return math.prod(f.dim for f in self.factors)

    def to_dense(self) -> Tensor:
        """Materialise the ``[numel, numel]`` block (tests and small blocks only)."""
        # torch.kron fails on non-contiguous operands (torch 2.14), hence .contiguous().
        out = self.factors[0].to_dense().contiguous()
        for factor in self.factors[1:]:
            out = torch.kron(out, factor.to_dense().contiguous())
        return out

    def eigendecompose(self, dtype: torch.dtype | None = None) -> tuple[EigenFactor, ...]:
        """Per-factor eigendecompositions (cached per dtype)."""
        key = dtype
        if key not in self._eigen:
            self._eigen[key] = tuple(f.eigh(dtype) for f in self.factors)
        return self._eigen[key]

    def eigenvalues(self, dtype: torch.dtype | None = None) -> tuple[Tensor, ...]:
        """Per-factor eigenvalues ``λ^(i)`` (non-negative; cached per dtype).

        Taken from a cached :meth:`eigendecompose` if there is one, else computed without
        eigenvectors (``eigvalsh``), which is all the log-determinant needs.
        """
        if dtype in self._eigen:
            return tuple(e.eigenvalues for e in self._eigen[dtype])
        key = ("values", dtype)
        if key not in self._eigen:
            self._eigen[key] = tuple(f.eigvalsh(dtype) for f in self.factors)
        return self._eigen[key]

    def logdet(self, delta: Tensor | float, dtype: torch.dtype | None = None) -> Tensor:
        """``log det(H_block + δ I)``, differentiable in ``δ``."""
        return kron_logdet(self.eigenvalues(dtype), delta)

    def effective_parameters(
        self, delta: Tensor | float, dtype: torch.dtype | None = None
    ) -> Tensor:
        """``γ = Σ λ / (λ + δ)`` over the block's eigenvalues, differentiable in ``δ``."""
        return kron_effective_parameters(self.eigenvalues(dtype), delta)

    def is_finite(self) -> bool:
        """Whether all factor entries are finite."""
        return all(f.is_finite() for f in self.factors)


@dataclass(eq=False)
class KroneckerBlock(CurvatureBlock):
    """``H ≈ F_1 ⊗ F_2 (⊗ ...)`` in the order of the covered parameter entries.

    For ``nn.Linear.weight`` (``[out, in]``, row-major) the factors are ``(B, A)``: ``B [out, out]``
    from output gradients, ``A [in, in]`` from inputs (paper Sec. 5).

    Attributes:
        kron_factors: at least two factors.
    """

    kron_factors: tuple[Factor, ...] = ()

    def __post_init__(self) -> None:
        if len(self.kron_factors) < 2:
            raise ValueError(f"KroneckerBlock {self.name!r} needs at least two factors")
        covered = sum(p.numel for p in self.params)
        if covered != self.numel:
            raise ValueError(
                f"block {self.name!r}: factors describe {self.numel} entries but the parameter "
                f"slices cover {covered}"
            )

    @property
    def factors(self) -> tuple[Factor, ...]:
        """The Kronecker factors."""
        return self.kron_factors


@dataclass(eq=False)
class DenseBlock(CurvatureBlock):
    """A dense PSD block ``H [P, P]`` over the covered parameter entries.

    Attributes:
        matrix: the dense factor.
    """

    matrix: DenseFactor

    def __post_init__(self) -> None:
        covered = sum(p.numel for p in self.params)
        if covered != self.matrix.dim:
            raise ValueError(
                f"block {self.name!r}: matrix is {self.matrix.dim}x{self.matrix.dim} but the "
                f"parameter slices cover {covered} entries"
            )

    @property
    def factors(self) -> tuple[Factor, ...]:
        """The single dense factor."""
        return (self.matrix,)
