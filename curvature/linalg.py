"""Log-determinants and effective parameter counts of Kronecker-factored blocks.

For a block ``H = F_1 ⊗ ... ⊗ F_k`` with eigenvalues ``λ^(i)`` of the factors, the eigenvalues
of ``H`` are all products ``λ^(1)_{i_1} ··· λ^(k)_{i_k}`` (paper App. D.2), so with one prior
precision ``δ`` per block:

* ``log det(H + δ I) = Σ_{i_1..i_k} log(λ^(1)_{i_1} ··· λ^(k)_{i_k} + δ)``,
* effective number of parameters ``γ = Σ λ / (λ + δ)`` (MacKay 1992).

Both are computed in chunks (the product spectrum of a large FC layer has ~10^8 entries) by one
custom autograd function (:class:`SpectrumSums`, also used for many blocks at once by
:class:`~curvature.spectra.BlockSpectra`) that is differentiable w.r.t. ``δ`` without storing
the spectrum.
Eigenvalues are treated as constants (the curvature is evaluated at fixed parameters).
Finite for any ``δ > 0``: the factors' eigenvalues are clamped to be non-negative.

Example:
    >>> import torch
    >>> la, lb = torch.tensor([1.0, 2.0]), torch.tensor([3.0])
    >>> float(kron_logdet((la, lb), torch.tensor(1.0)))  # log(4) + log(7)
    3.332204...
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor

__all__ = [
    "SpectrumPiece",
    "SpectrumQuantity",
    "SpectrumSums",
    "kron_effective_parameters",
    "kron_eigenvalues",
    "kron_logdet",
]

# Number of product eigenvalues materialised at once.
_CHUNK = 1 << 22


def kron_eigenvalues(eigenvalues: Sequence[Tensor]) -> Tensor:
    """All products of the factors' eigenvalues, in Kronecker order (small blocks only).

    Args:
        eigenvalues: one ``[d_i]`` tensor per factor.

    Returns:
        ``[d_1 ··· d_k]`` with index ``(i_1, ..., i_k)`` row-major, matching ``torch.kron``.
    """
    out = eigenvalues[0]
    for values in eigenvalues[1:]:
        out = torch.outer(out, values).reshape(-1)
    return out


def _chunks(eigenvalues: Sequence[Tensor]):
    """Yield the product spectrum in pieces of about ``_CHUNK`` entries."""
    head, tail = eigenvalues[0], kron_eigenvalues(eigenvalues[1:]) if len(eigenvalues) > 1 else None
    if tail is None:
        for start in range(0, head.numel(), _CHUNK):
            yield head[start : start + _CHUNK]
        return
    rows = max(1, _CHUNK // max(1, tail.numel()))
    for start in range(0, head.numel(), rows):
        yield torch.outer(head[start : start + rows], tail).reshape(-1)


SpectrumQuantity = Literal["logdet", "effective_parameters"]
"""Which sum over a spectrum: ``Σ log(λ + δ)`` or ``Σ λ / (λ + δ)``."""


class SpectrumPiece(NamedTuple):
    """A piece of one or more blocks' product spectra.

    Attributes:
        values: ``[M]`` eigenvalues, block after block.
        sizes: number of values of each block in the piece (summing to ``M``).
        blocks: ``[len(sizes)]`` index of each block in the precision vector.
        lengths: ``sizes`` as a tensor on the values' device (built once by the owner of a
            piece that is evaluated many times; only needed for pieces of several blocks).
    """

    values: Tensor
    sizes: list[int]
    blocks: Tensor
    lengths: Tensor | None = None


class SpectrumSums(torch.autograd.Function):
    """Per-block ``Σ φ(λ, δ_b)`` over spectrum pieces, with ``∂/∂δ_b`` from the same pass.

    ``φ`` is ``log(λ + δ)`` (``"logdet"``) or ``λ / (λ + δ)`` (``"effective_parameters"``).
    ``forward(ctx, quantity, deltas [B], pieces)``: ``pieces`` is an iterable of
    :class:`SpectrumPiece` (e.g. a generator over chunks of one block's spectrum, which is then
    never stored whole, or all blocks packed into one piece). Each block is summed pairwise
    within a piece and pieces are accumulated, in the values' dtype; the result ``[B]`` is in
    ``deltas``' dtype.
    """

    @staticmethod
    def forward(ctx, quantity: SpectrumQuantity, deltas: Tensor, pieces) -> Tensor:
        """``[B]`` sums; saves their derivatives in ``δ`` for :meth:`backward`."""
        totals = torch.zeros((2, deltas.numel()), dtype=deltas.dtype, device=deltas.device)
        for values, sizes, blocks, lengths in pieces:
            piece_deltas = deltas.to(values.dtype)[blocks]
            if len(sizes) > 1:
                piece_deltas = piece_deltas.repeat_interleave(lengths, output_size=values.numel())
            denom = values + piece_deltas
            if quantity == "logdet":
                terms, slopes = torch.log(denom), denom.reciprocal()
            else:
                terms = values / denom
                slopes = -terms / denom
            # one pairwise sum per block: as accurate as torch.sum over the block, and on the
            # CPU faster than segment sums from a prefix sum
            sums = torch.stack(
                [torch.stack([t.sum() for t in x.split(sizes)]) for x in (terms, slopes)]
            )
            totals = totals.index_add(1, blocks, sums.to(deltas.dtype))
        ctx.save_for_backward(totals[1])
        return totals[0]

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        """Gradient in ``deltas`` only."""
        (slopes,) = ctx.saved_tensors
        return None, grad_output * slopes, None


def _chunked(eigenvalues: Sequence[Tensor], dtype: torch.dtype):
    """The product spectrum of one block as :class:`SpectrumPiece` s of about ``_CHUNK``."""
    block = torch.zeros(1, dtype=torch.long, device=eigenvalues[0].device)
    for lam in _chunks(eigenvalues):
        yield SpectrumPiece(lam.to(dtype), [lam.numel()], block)


def _block_sum(quantity: SpectrumQuantity, eigenvalues: Sequence[Tensor], delta: Tensor) -> Tensor:
    eigenvalues = [v.detach() for v in eigenvalues]
    pieces = _chunked(eigenvalues, delta.dtype)
    return SpectrumSums.apply(quantity, delta.reshape(1), pieces).reshape(())


def _check(eigenvalues: Sequence[Tensor], delta: Tensor) -> Tensor:
    if len(eigenvalues) == 0:
        raise ValueError("need the eigenvalues of at least one factor")
    delta = torch.as_tensor(delta)
    if delta.numel() != 1:
        raise ValueError(f"one prior precision per block expected, got shape {tuple(delta.shape)}")
    value = float(delta.detach())
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"prior precision must be finite and positive, got {value}")
    return delta.reshape(())


def kron_logdet(eigenvalues: Sequence[Tensor], delta: Tensor | float) -> Tensor:
    """``log det(F_1 ⊗ ... ⊗ F_k + δ I)`` from the factors' eigenvalues.

    Args:
        eigenvalues: one ``[d_i]`` tensor of non-negative eigenvalues per factor.
        delta: prior precision ``δ > 0`` (0-dim tensor, differentiable).

    Returns:
        0-dim tensor in ``delta``'s dtype.
    """
    delta = _check(eigenvalues, torch.as_tensor(delta))
    return _block_sum("logdet", eigenvalues, delta)


def kron_effective_parameters(eigenvalues: Sequence[Tensor], delta: Tensor | float) -> Tensor:
    """Effective number of parameters ``γ = Σ λ / (λ + δ)`` of ``F_1 ⊗ ... ⊗ F_k``.

    Args:
        eigenvalues: one ``[d_i]`` tensor of non-negative eigenvalues per factor.
        delta: prior precision ``δ > 0`` (0-dim tensor, differentiable).

    Returns:
        0-dim tensor in ``[0, Π d_i]``.
    """
    delta = _check(eigenvalues, torch.as_tensor(delta))
    return _block_sum("effective_parameters", eigenvalues, delta)


def numel_of(eigenvalues: Sequence[Tensor]) -> int:
    """Number of parameters ``Π d_i`` of a block with these factor spectra."""
    return math.prod(v.numel() for v in eigenvalues)
