"""Kronecker factors: symmetric positive semi-definite matrices that know their structure.

A factor is either a :class:`DenseFactor` (one ``[d, d]`` matrix) or a
:class:`BlockDiagonalFactor` (``K`` blocks ``[K, b, b]`` of a ``[K b, K b]`` block-diagonal
matrix, as the input factor of factored layers, paper App. C.1). The structure is a typed
attribute, never inferred from tensor ranks, and block-diagonal factors are never
materialised by the engine: they are eigendecomposed block by block.

Example:
    >>> import torch
    >>> f = BlockDiagonalFactor(torch.eye(2).repeat(3, 1, 1) * 2.0)
    >>> f.dim, f.eigh().eigenvalues.tolist()
    (6, [2.0, 2.0, 2.0, 2.0, 2.0, 2.0])
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal, overload

import torch
from torch import Tensor

__all__ = ["BlockDiagonalFactor", "DenseFactor", "EigenFactor", "Factor"]


class Factor(ABC):
    """A symmetric PSD Kronecker factor with known structure."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Side length ``d`` of the (dense equivalent) square matrix."""

    @property
    @abstractmethod
    def data(self) -> Tensor:
        """The stored tensor (``[d, d]`` or ``[K, b, b]``)."""

    @abstractmethod
    def to_dense(self) -> Tensor:
        """Materialise the ``[d, d]`` matrix (tests and small factors only)."""

    @abstractmethod
    def eigh(self, dtype: torch.dtype | None = None) -> EigenFactor:
        """Eigendecomposition; negative round-off eigenvalues are clamped to zero."""

    def eigvalsh(self, dtype: torch.dtype | None = None) -> Tensor:
        """The eigenvalues of :meth:`eigh` (same order, clamped) without the eigenvectors.

        What log-determinants and effective parameters need; LAPACK skips the back
        transformation, the larger part of the work for wide factors.
        """
        values, _ = _symmetric_eigh(self.data, dtype, vectors=False)
        return values.reshape(-1)

    @abstractmethod
    def with_data(self, data: Tensor) -> Factor:
        """A factor of the same structure holding ``data``."""

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the stored tensor."""
        return self.data.dtype

    @property
    def device(self) -> torch.device:
        """Device of the stored tensor."""
        return self.data.device

    @property
    def nbytes(self) -> int:
        """Memory of the stored tensor in bytes."""
        return self.data.numel() * self.data.element_size()

    def is_finite(self) -> bool:
        """Whether every stored entry is finite."""
        return all_finite(self.data)

    def __add__(self, other: Factor) -> Factor:
        if type(other) is not type(self) or other.data.shape != self.data.shape:
            raise TypeError(
                f"cannot add {type(self).__name__}{tuple(self.data.shape)} and "
                f"{type(other).__name__}{tuple(other.data.shape)}"
            )
        return self.with_data(self.data + other.data)

    def __mul__(self, scalar: float | Tensor) -> Factor:
        return self.with_data(self.data * scalar)

    __rmul__ = __mul__


@dataclass(frozen=True, eq=False)
class DenseFactor(Factor):
    """A dense symmetric PSD factor.

    Attributes:
        matrix: ``[d, d]``.
    """

    matrix: Tensor

    def __post_init__(self) -> None:
        if self.matrix.ndim != 2 or self.matrix.shape[0] != self.matrix.shape[1]:
            raise ValueError(f"DenseFactor needs a square matrix, got {tuple(self.matrix.shape)}")

    @property
    def dim(self) -> int:
        """Side length ``d``."""
        return self.matrix.shape[0]

    @property
    def data(self) -> Tensor:
        """The ``[d, d]`` matrix."""
        return self.matrix

    def to_dense(self) -> Tensor:
        """The ``[d, d]`` matrix itself."""
        return self.matrix

    def with_data(self, data: Tensor) -> DenseFactor:
        """A dense factor holding ``data``."""
        return DenseFactor(data)

    def eigh(self, dtype: torch.dtype | None = None) -> EigenFactor:
        """``Q diag(λ) Qᵀ`` with ``λ >= 0`` (clamped), computed in ``dtype`` if given."""
        values, vectors = _symmetric_eigh(self.matrix, dtype)
        return EigenFactor(values, DenseFactor(vectors))


@dataclass(frozen=True, eq=False)
class BlockDiagonalFactor(Factor):
    """A block-diagonal symmetric PSD factor ``blockdiag(F_1, ..., F_K)``.

    Attributes:
        blocks: ``[K, b, b]``; the dense equivalent is ``[K b, K b]`` with block ``k`` at rows and
            columns ``k b .. (k+1) b``.
    """

    blocks: Tensor

    def __post_init__(self) -> None:
        if self.blocks.ndim != 3 or self.blocks.shape[1] != self.blocks.shape[2]:
            raise ValueError(
                f"BlockDiagonalFactor needs blocks [K, b, b], got {tuple(self.blocks.shape)}"
            )

    @property
    def dim(self) -> int:
        """Side length ``K b``."""
        return self.blocks.shape[0] * self.blocks.shape[1]

    @property
    def data(self) -> Tensor:
        """The ``[K, b, b]`` blocks."""
        return self.blocks

    def to_dense(self) -> Tensor:
        """The ``[K b, K b]`` block-diagonal matrix."""
        return torch.block_diag(*self.blocks.unbind(0))

    def with_data(self, data: Tensor) -> BlockDiagonalFactor:
        """A block-diagonal factor holding ``data``."""
        return BlockDiagonalFactor(data)

    def eigh(self, dtype: torch.dtype | None = None) -> EigenFactor:
        """Batched per-block eigendecomposition; eigenvalues ordered block by block."""
        values, vectors = _symmetric_eigh(self.blocks, dtype)
        return EigenFactor(values.reshape(-1), BlockDiagonalFactor(vectors))


@dataclass(frozen=True, eq=False)
class EigenFactor:
    """Eigendecomposition ``F = Q diag(λ) Qᵀ`` of a factor.

    Attributes:
        eigenvalues: ``[d]``, clamped to be non-negative, in the order of ``eigenvectors``'
            columns (block by block for block-diagonal factors).
        eigenvectors: a factor of the same structure holding ``Q`` (orthogonal).
    """

    eigenvalues: Tensor
    eigenvectors: Factor


def all_finite(t: Tensor) -> bool:
    """Whether every entry of ``t`` is finite, usually from one reduction and no bool copy.

    A finite sum implies finite entries (a NaN or inf entry makes the sum NaN or inf); only a
    non-finite sum, which may also be an overflow of finite entries, is checked element-wise.
    """
    with torch.no_grad():
        if bool(torch.isfinite(t.sum())):
            return True
        return bool(torch.isfinite(t).all())


@overload
def _symmetric_eigh(
    matrix: Tensor, dtype: torch.dtype | None, vectors: Literal[True] = True
) -> tuple[Tensor, Tensor]: ...


@overload
def _symmetric_eigh(
    matrix: Tensor, dtype: torch.dtype | None, vectors: Literal[False]
) -> tuple[Tensor, None]: ...


def _symmetric_eigh(
    matrix: Tensor, dtype: torch.dtype | None, vectors: bool = True
) -> tuple[Tensor, Tensor | None]:
    """Eigendecompose a (batch of) symmetric matrices, clamping round-off negatives to zero.

    Factors are sums of outer products and hence PSD; negative eigenvalues only come from
    round-off and would make ``log(λ_A λ_B + δ)`` undefined for small ``δ``.

    The decomposition runs in ``dtype`` if given, else in the factor's dtype. float32 LAPACK
    ``syevd`` can return NaN (or fail to converge) on KFAC factors with many zero rows (dead
    ReLU channels, 1x1 maps under circular padding), so a result that is not finite, or whose
    eigenvalues do not sum to the trace, is recomputed in float64 with a relative diagonal
    jitter of 1e-12 (float64 only then: it costs about twice the time of float32).
    With ``vectors=False`` only the eigenvalues are computed (``eigvalsh``; ``None`` vectors).
    """
    out_dtype = dtype or matrix.dtype
    work = matrix if dtype is None else matrix.to(dtype)
    work = 0.5 * (work + work.transpose(-1, -2))
    try:
        values, q = _eigh(work, vectors)
        trace = work.diagonal(dim1=-2, dim2=-1).sum(-1)
        scale = values.abs().sum(-1) + torch.finfo(values.dtype).tiny
        sums_match = ((values.sum(-1) - trace).abs() <= 1e-3 * scale).all()
        checks = torch.isfinite(values).all() & sums_match
        if q is not None:
            checks = checks & torch.isfinite(q).all()
        ok = bool(checks)  # one host sync (on a GPU) for all checks
    except torch.linalg.LinAlgError:
        ok = False
    if not ok:
        double = work.double()
        diag = double.diagonal(dim1=-2, dim2=-1).abs().amax(-1).clamp(min=1e-30)
        eye = torch.eye(double.shape[-1], dtype=double.dtype, device=double.device)
        values, q = _eigh(double + 1e-12 * diag[..., None, None] * eye, vectors)
    return values.clamp(min=0.0).to(out_dtype), None if q is None else q.to(out_dtype)


def _eigh(matrix: Tensor, vectors: bool = True) -> tuple[Tensor, Tensor | None]:
    """``torch.linalg.eigh`` (or ``eigvalsh``) with one intra-op thread on CPU.

    MKL's multi-threaded ``syevd`` collapses on KFAC-sized matrices (sides 256-1568) whenever
    another process shares the cores, many times slower than the single-threaded routine,
    which stalled marglik hyper steps (docs/benchmarks.md, "Design choices of the curvature
    engine").
    """

    def run() -> tuple[Tensor, Tensor | None]:
        if vectors:
            values, eigenvectors = torch.linalg.eigh(matrix)
            return values, eigenvectors
        return torch.linalg.eigvalsh(matrix), None

    if matrix.device.type != "cpu":
        return run()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run()
    finally:
        torch.set_num_threads(threads)
