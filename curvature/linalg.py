"""Log-determinants and effective parameter counts of Kronecker-factored blocks.

For a block ``H = F_1 ⊗ ... ⊗ F_k`` with eigenvalues ``λ^(i)`` of the factors, the eigenvalues
of ``H`` are all products ``λ^(1)_{i_1} ··· λ^(k)_{i_k}`` (paper App. D.2), so with one prior
precision ``δ`` per block:

* ``log det(H + δ I) = Σ_{i_1..i_k} log(λ^(1)_{i_1} ··· λ^(k)_{i_k} + δ)``,
* effective number of parameters ``γ = Σ λ / (λ + δ)`` (MacKay 1992).

Both are computed in chunks (the product spectrum of a large FC layer has ~10^8 entries) by a
custom autograd function that is differentiable w.r.t. ``δ`` without storing the spectrum.
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

import torch
from torch import Tensor

__all__ = ["kron_effective_parameters", "kron_eigenvalues", "kron_logdet"]

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


class _KronSpectrumSum(torch.autograd.Function):
    """``Σ φ(λ, δ)`` over the product spectrum, with ``∂/∂δ`` computed in the same pass."""

    @staticmethod
    def forward(ctx, kind: str, delta: Tensor, *eigenvalues: Tensor) -> Tensor:
        total = torch.zeros((), dtype=delta.dtype, device=delta.device)
        dtotal = torch.zeros_like(total)
        for lam in _chunks(eigenvalues):
            lam = lam.to(delta.dtype)
            denom = lam + delta
            if kind == "logdet":
                total = total + torch.log(denom).sum()
                dtotal = dtotal + denom.reciprocal().sum()
            else:  # effective parameters
                total = total + (lam / denom).sum()
                dtotal = dtotal - (lam / denom.square()).sum()
        ctx.save_for_backward(dtotal)
        return total

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        (dtotal,) = ctx.saved_tensors
        return (None, grad_output * dtotal, *([None] * (len(ctx.needs_input_grad) - 2)))


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
    return _KronSpectrumSum.apply("logdet", delta, *[v.detach() for v in eigenvalues])


def kron_effective_parameters(eigenvalues: Sequence[Tensor], delta: Tensor | float) -> Tensor:
    """Effective number of parameters ``γ = Σ λ / (λ + δ)`` of ``F_1 ⊗ ... ⊗ F_k``.

    Args:
        eigenvalues: one ``[d_i]`` tensor of non-negative eigenvalues per factor.
        delta: prior precision ``δ > 0`` (0-dim tensor, differentiable).

    Returns:
        0-dim tensor in ``[0, Π d_i]``.
    """
    delta = _check(eigenvalues, torch.as_tensor(delta))
    return _KronSpectrumSum.apply("effective", delta, *[v.detach() for v in eigenvalues])


def numel_of(eigenvalues: Sequence[Tensor]) -> int:
    """Number of parameters ``Π d_i`` of a block with these factor spectra."""
    return math.prod(v.numel() for v in eigenvalues)
