"""Re-reading a G-feature map as an H-feature map for a subgroup ``H <= G``.

With the right-coset representatives ``R = (s_0 = e, s_1, ...)`` of ``H`` in ``G``
(:func:`~bayesym.groups.finite.right_coset_representatives`), every ``g ∈ G`` is uniquely
``g = h·s``. A G-feature map ``y: [N, C, |G|, X, Y]`` is re-read as an H-feature map
``z: [N, C·[G:H], |H|, X, Y]`` (EquiNAS Eq. 3):

    ``z[n, c·[G:H] + j, i] = y[n, c, index[j, i]]``,  ``index[j, i] = h_i·s_j``,

i.e. channel-major layout ``(c, s)``, the representative varying fastest. For every
``h ∈ H`` the regular action commutes with this re-reading:
``restrict(h.y) = h.restrict(y)``, so an H-layer can consume a G-layer's output. The
re-reading is a permutation of the group axis followed by a reshape; :func:`expand_feature_map`
is its inverse.

Example:
    >>> from bayesym.groups.d4 import d4_subgroup
    >>> d4, d2 = d4_subgroup("D4"), d4_subgroup("D2")
    >>> restriction_index(d4, d2).tolist()  # rows: s = e, R; columns: h in D2
    [[0, 2, 4, 6], [1, 3, 7, 5]]
"""

from __future__ import annotations

import torch
from torch import Tensor

from bayesym.groups.finite import FiniteGroup, inclusion, right_coset_representatives

__all__ = ["expand_feature_map", "restrict_feature_map", "restriction_index"]


def restriction_index(group: FiniteGroup, sub: FiniteGroup) -> Tensor:
    """``index[j, i] = h_i·s_j`` as ``G``-indices: ``[[G:H], |H|]`` int64 (CPU).

    Row ``j`` lists the right coset ``H s_j`` in the order of ``H``'s elements; the rows
    together are a permutation of ``0 .. |G|-1``.

    Raises:
        ValueError: If ``sub`` is not a subgroup of ``group``.
    """
    members = inclusion(sub, group).tolist()
    reps = right_coset_representatives(group, sub)
    table = group.cayley_table
    return torch.stack([table[members, s] for s in reps])


def _check_map(y: Tensor, group: FiniteGroup, what: str, channels_multiple: int = 1) -> None:
    if y.dim() < 3 or y.shape[-3] != group.order or y.dim() < 4:
        raise ValueError(
            f"{what}: expected a {group.name}-feature map [..., C, {group.order}, X, Y], "
            f"got {tuple(y.shape)}"
        )
    if y.shape[-4] % channels_multiple:
        raise ValueError(
            f"{what}: channel count {y.shape[-4]} is not a multiple of {channels_multiple}"
        )


def restrict_feature_map(y: Tensor, group: FiniteGroup, sub: FiniteGroup) -> Tensor:
    """Re-read ``y: [..., C, |G|, X, Y]`` as ``[..., C·[G:H], |H|, X, Y]`` (module docstring).

    Raises:
        ValueError: Shape does not match ``group`` or ``sub`` is not a subgroup of it.
    """
    _check_map(y, group, f"restrict_feature_map({group.name} -> {sub.name})")
    index = restriction_index(group, sub)
    moved = y.index_select(-3, index.flatten().to(y.device))
    channels = y.shape[-4]
    return moved.reshape(*y.shape[:-4], channels * index.shape[0], sub.order, *y.shape[-2:])


def expand_feature_map(z: Tensor, group: FiniteGroup, sub: FiniteGroup) -> Tensor:
    """Inverse of :func:`restrict_feature_map`, back to ``[..., C, |G|, X, Y]``.

    Raises:
        ValueError: Shape does not match ``sub``, the channel count is not a multiple of
            ``[G:H]``, or ``sub`` is not a subgroup of ``group``.
    """
    index = restriction_index(group, sub)
    cosets = index.shape[0]
    _check_map(z, sub, f"expand_feature_map({sub.name} -> {group.name})", cosets)
    flat = z.reshape(*z.shape[:-4], z.shape[-4] // cosets, group.order, *z.shape[-2:])
    inverse = torch.argsort(index.flatten()).to(z.device)
    return flat.index_select(-3, inverse)
