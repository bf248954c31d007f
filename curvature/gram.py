r"""In-place Gram updates ``S ← S + Rᵀ R`` of running factor sums, symmetric where it pays.

A Gram matrix is symmetric, so half of a general product ``Rᵀ R`` (``R: [M, d]``, ``M d²``
multiply-adds) is redundant. torch has no symmetric rank-k product; on the CPU, for wide
factors, :func:`gram_update_` calls BLAS ``syrk`` (through SciPy, on the same memory, no copy),
which writes only the lower triangle; the caller mirrors it once at the end
(:func:`mirror_lower_`). ``syrk`` pays for wide factors only: for narrow ones, and for small
products, the fixed cost of the call dominates (:data:`SYRK_MIN_DIM`, :data:`SYRK_MIN_WORK`;
the crossover is measured in ``docs/benchmarks.md``, "Design choices of the curvature
engine"). Narrow factors, small products, other devices and dtypes keep the general product.

SciPy's BLAS has its own thread pool; each call runs it with torch's thread count
(``torch.get_num_threads()``) and restores the previous setting. The update is a torch operator
(``torch.ops.curvature.syrk_lower_``) with a FLOP formula, so ``torch.utils.flop_counter``
counts it (``M d (d + 1)`` FLOPs), and a fake implementation for tracing.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

__all__ = ["SYRK_MIN_DIM", "SYRK_MIN_WORK", "gram_sum", "gram_update_", "mirror_lower_"]

SYRK_MIN_DIM = 256
"""Smallest factor side for which the symmetric product is used (the measured crossover)."""

SYRK_MIN_WORK = 1 << 25
"""Smallest ``M d²`` for which it is used: below, the operator's fixed cost outweighs the
saving of half the multiply-adds."""


@cache
def _blas():
    """SciPy's BLAS module and a controller of the loaded BLAS thread pools."""
    from scipy.linalg import blas
    from threadpoolctl import ThreadpoolController

    return blas, ThreadpoolController().select(user_api="blas")


def _symmetric_route(matrix: Tensor, rows: Tensor) -> bool:
    return (
        matrix.device.type == "cpu"
        and rows.device.type == "cpu"
        and matrix.dtype in (torch.float32, torch.float64)
        and rows.dtype == matrix.dtype
        and matrix.shape[0] >= SYRK_MIN_DIM
        and rows.shape[0] * matrix.shape[0] ** 2 >= SYRK_MIN_WORK
        and matrix.is_contiguous()
    )


# A plain operator (``torch.library.Library``, not ``custom_op``, whose first call imports
# the slow-to-import torch._dynamo), so torch's FLOP counter and fake tensors can see it.
_LIBRARY = torch.library.Library("curvature", "DEF")
_LIBRARY.define("syrk_lower_(Tensor(a!) matrix, Tensor rows) -> ()")


def _syrk_lower_(matrix: Tensor, rows: Tensor) -> None:
    """Lower triangle of ``matrix += rowsᵀ rows`` by BLAS ``syrk``."""
    blas, pools = _blas()
    syrk = blas.ssyrk if matrix.dtype == torch.float32 else blas.dsyrk
    # Fortran views of the C-ordered tensors: rows.T is the [d, M] matrix A, the upper
    # triangle of the Fortran view of ``matrix`` is its lower triangle in C order.
    a = rows.contiguous().numpy().T
    c = matrix.numpy().T
    with pools.limit(limits=torch.get_num_threads()):
        out = syrk(1.0, a, beta=1.0, c=c, trans=0, lower=0, overwrite_c=1)
    if out is not c:  # SciPy had to copy (never for a contiguous matrix)
        matrix.copy_(torch.from_numpy(out.T))


def _syrk_lower_fake(matrix: Tensor, rows: Tensor) -> None:
    """Shape-only version for tracing (fake tensors): nothing to return."""


_LIBRARY.impl("syrk_lower_", _syrk_lower_, "CPU")
torch.library.register_fake("curvature::syrk_lower_", _syrk_lower_fake, lib=_LIBRARY)


@register_flop_formula(torch.ops.curvature.syrk_lower_)
def _syrk_flops(matrix_shape, rows_shape, *args, **kwargs) -> int:
    """``M d (d + 1)``: the lower triangle of a ``2 M d²``-FLOP product."""
    m, d = rows_shape
    return m * d * (d + 1)


def gram_update_(matrix: Tensor, rows: Tensor) -> bool:
    """``matrix += rowsᵀ rows`` in place, possibly only its lower triangle.

    Args:
        matrix: ``[d, d]`` running sum (contiguous for the symmetric route).
        rows: ``[M, d]``.

    Returns:
        ``True`` if only the lower triangle (``i >= j``) was updated (the upper one is then
        stale until :func:`mirror_lower_`), ``False`` if the whole matrix was.
    """
    with torch.no_grad():
        if _symmetric_route(matrix, rows):
            torch.ops.curvature.syrk_lower_(matrix, rows.detach())
            return True
        # the out= form, unlike addmm_, is seen by torch's FLOP counter
        torch.addmm(matrix, rows.transpose(0, 1), rows, out=matrix)
        return False


@torch.no_grad()
def mirror_lower_(matrix: Tensor, tile: int = 128) -> Tensor:
    """Copy the strict lower triangle of ``matrix [d, d]`` onto its upper one, in place.

    Tile by tile: a transposed read of a whole large matrix is cache-hostile, and the tiled
    copy also avoids the two ``[d, d]`` temporaries of ``tril + tril(-1)ᵀ``.
    """
    d = matrix.shape[0]
    for i in range(0, d, tile):
        for j in range(i + tile, d, tile):
            matrix[i : i + tile, j : j + tile] = matrix[j : j + tile, i : i + tile].T
        diagonal = matrix[i : i + tile, i : i + tile]
        diagonal.copy_(diagonal.tril() + diagonal.tril(-1).T)
    return matrix


def gram_sum(chunks: Iterable[Tensor], dim: int, like: Tensor) -> Tensor:
    """``Σ_c R_cᵀ R_c`` over row chunks ``R_c: [M_c, dim]``, as a full symmetric matrix.

    For adapters whose rows come in pieces (e.g. one output direction at a time): each chunk is
    multiplied into one running sum in place (:func:`gram_update_`, so wide sums take the
    symmetric route), and the lower triangle is mirrored once at the end if needed.

    Args:
        chunks: the row chunks (an empty iterable gives zeros).
        dim: ``d``.
        like: dtype and device of the result.

    Returns:
        ``[d, d]``.
    """
    total = like.new_zeros(dim, dim)
    lower = False
    for rows in chunks:
        lower |= gram_update_(total, rows)
    return mirror_lower_(total) if lower else total
