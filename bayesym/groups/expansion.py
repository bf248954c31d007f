"""Index maps that expand lifting / group-convolution filters into plain conv kernels.

A group convolution over ``G <= D4`` is computed as ONE ``F.conv2d`` with an *expanded*
kernel (Cohen & Welling 2016; EquiNAS App. A). The expansion is a pure gather of the
learnable weight, so a curvature adapter can express the layer as a linear map with
weight sharing over (group element, spatial offset).

Notation: ``T_g`` is the image action (:func:`~bayesym.groups.actions.image_transform`),
kernels are ``k x k`` with ``k`` odd and centred, ``(T_g ψ)(u) = ψ(g^-1 u)``.

**Lifting** (EquiNAS Eq. 2). Weight ``ψ: [C_out, C_in, k, k]``. Output channel ``(d, g)``
uses the filter ``T_g ψ[d, c]``:

    ``W[d, g, c, i, j] = ψ[d, c].flatten()[L[g, i, j]]``,
    ``L[g] = T_g(arange(k·k).reshape(k, k))``   (``L: [|G|, k, k]``),

reshaped to ``[C_out·|G|, C_in, k, k]`` (flat output channel ``d·|G| + g``).

**Group convolution** (EquiNAS Eq. 1, with the spatial part made explicit). Weight
``ψ: [C_out, C_in, |G|, k, k]``; ``ψ[d, c, u]`` is the filter for relative element
``u = r^-1 h`` between output element ``r`` and input element ``h``:

    ``W[d, r, c, h, i, j] = ψ[d, c].flatten()[M[r, h, i, j]]``,
    ``M[r, h, i, j] = (r^-1 h)·k² + L[r, i, j]``   (``M: [|G|, |G|, k, k]``),

i.e. ``W[(d, r), (c, h)] = T_r ψ[d, c, r^-1 h]``, reshaped to
``[C_out·|G|, C_in·|G|, k, k]`` (flat channels ``d·|G| + r`` and ``c·|G| + h``).

With cross-correlation ``out = x ⋆ W`` these give ``L(g.x) = g.L(x)`` for the regular
action ``(g.y)(h, p) = y(g^-1 h, g^-1 p)``, for every ``g ∈ G`` (exact on square grids with
circular, reflect, replicate or zero "same" padding).

Example:
    >>> import torch
    >>> from bayesym.groups.d4 import d4_subgroup
    >>> c4 = d4_subgroup("C4")
    >>> psi = torch.arange(9.0).reshape(1, 1, 3, 3)
    >>> w = expand_lifting_kernel(psi, c4)
    >>> w.shape, bool(torch.equal(w[1, 0], torch.rot90(psi[0, 0], 1, (-2, -1))))
    (torch.Size([4, 1, 3, 3]), True)
"""

from __future__ import annotations

import torch
from torch import Tensor

from bayesym.checks import is_positive_int
from bayesym.groups.actions import image_transform
from bayesym.groups.finite import FiniteGroup

__all__ = [
    "expand_group_kernel",
    "expand_lifting_kernel",
    "group_conv_expansion_index",
    "lifting_expansion_index",
]


def _check_kernel_size(kernel_size: int, owner: str) -> None:
    if not is_positive_int(kernel_size):
        raise ValueError(f"{owner}: kernel_size must be a positive int, got {kernel_size!r}")
    if kernel_size % 2 == 0:
        raise ValueError(
            f"{owner}: kernel_size must be odd (a centred kernel is needed for exact "
            f"rotation/flip equivariance), got {kernel_size}"
        )


def lifting_expansion_index(group: FiniteGroup, kernel_size: int) -> Tensor:
    """``L: [|G|, k, k]`` int64 (CPU), ``L[g] = T_g(arange(k²).reshape(k, k))``.

    ``(T_g ψ).flatten()[p] = ψ.flatten()[L[g].flatten()[p]]`` for any ``k x k`` kernel.
    """
    _check_kernel_size(kernel_size, "lifting_expansion_index")
    grid = torch.arange(kernel_size * kernel_size).reshape(kernel_size, kernel_size)
    return torch.stack([image_transform(grid, group, g) for g in group])


def group_conv_expansion_index(group: FiniteGroup, kernel_size: int) -> Tensor:
    """``M: [|G|, |G|, k, k]`` int64 (CPU), ``M[r, h] = (r^-1 h)·k² + L[r]``."""
    spatial = lifting_expansion_index(group, kernel_size)
    table, inverses = group.cayley_table, group.inverses
    relative = table[inverses]  # relative[r, h] = r^-1 h
    return relative[:, :, None, None] * kernel_size**2 + spatial[:, None]


def _check_weight(weight: Tensor, dims: int, owner: str) -> None:
    if weight.dim() != dims:
        raise ValueError(f"{owner}: expected a {dims}-D weight, got shape {tuple(weight.shape)}")


def expand_lifting_kernel(
    weight: Tensor, group: FiniteGroup, index: Tensor | None = None
) -> Tensor:
    """Expand ``weight: [C_out, C_in, k, k]`` to ``[C_out·|G|, C_in, k, k]`` (module doc).

    Args:
        weight: Lifting filters.
        group: ``G <= D4``.
        index: Precomputed :func:`lifting_expansion_index` (any device), optional.
    """
    _check_weight(weight, 4, f"expand_lifting_kernel({group.name})")
    c_out, c_in, k, _ = weight.shape
    if index is None:
        index = lifting_expansion_index(group, k)
    index = index.to(weight.device)
    flat = weight.reshape(c_out, c_in, k * k)[:, :, index.reshape(-1)]
    flat = flat.reshape(c_out, c_in, group.order, k, k)
    return flat.transpose(1, 2).reshape(c_out * group.order, c_in, k, k)


def expand_group_kernel(weight: Tensor, group: FiniteGroup, index: Tensor | None = None) -> Tensor:
    """Expand ``weight: [C_out, C_in, |G|, k, k]`` to ``[C_out·|G|, C_in·|G|, k, k]``.

    Args:
        weight: Group-convolution filters (module doc).
        group: ``G <= D4``.
        index: Precomputed :func:`group_conv_expansion_index` (any device), optional.
    """
    _check_weight(weight, 5, f"expand_group_kernel({group.name})")
    c_out, c_in, n, k, _ = weight.shape
    if n != group.order:
        raise ValueError(
            f"expand_group_kernel({group.name}): weight group axis has {n} entries, "
            f"expected {group.order}"
        )
    if index is None:
        index = group_conv_expansion_index(group, k)
    index = index.to(weight.device)
    flat = weight.reshape(c_out, c_in, n * k * k)[:, :, index.reshape(-1)]
    flat = flat.reshape(c_out, c_in, n, n, k, k)  # [d, c, r, h, i, j]
    return flat.permute(0, 2, 1, 3, 4, 5).reshape(c_out * n, c_in * n, k, k)
