r"""Relaxed layers with a group-convolution path: F-FC + CONV + GCONV (App. A/B, Sec. 6.3).

Feature maps of these layers carry a group axis (a subgroup ``G`` of D4, regular
representation): a relaxed layer maps ``[N, C_in, |G|, H, W]`` to ``[N, C_out, |G|, H, W]``,
or, as the *lifting* first layer of a network, images ``[N, C_in, H, W]`` to
``[N, C_out, |G|, H, W]``. Following :class:`~bayesym.layers.paths.PathSum`:

* the ``"gconv"`` path (:class:`~bayesym.layers.group_conv.GroupConv2d`, or
  :class:`~bayesym.layers.group_conv.LiftingConv2d` when lifting) sees the group feature
  maps as they are and is exactly equivariant to ``G`` (rotations/flips acting on the grid
  and, by the regular representation, on the group axis) and to every cyclic shift;
* the ``"pgconv"`` path is the layer-wise paper's own GCONV, one ordinary convolution shared
  over the rotated copies (:class:`~bayesym.layers.pointwise_group_conv.PointwiseGroupConv2d`,
  ``|G|`` times fewer parameters than ``"gconv"``; when lifting it is ``LiftingConv2d`` too),
  with the same symmetry;
* the plain paths (``"fc"``, ``"ffc"``, ``"sfc"``, ``"conv"``, ``"sconv"``) see the channel
  and group axes merged, ``[N, C_in |G|, H, W] -> [N, C_out |G|, H, W]`` with merged channel
  ``c |G| + g``. ``"conv"``/``"sconv"`` commute with cyclic shifts but not with ``G``;
  the FC kinds with neither.

So with the FC path zero the layer is translation-equivariant; with the FC and CONV paths
zero it is exactly ``G``-and-translation equivariant (Eq. (11) with the groups
``{e}``, ``Z^2``, ``Z^2 x G``). The per-channel bias (shared over the group axis) sits in the
first group path (``"gconv"`` or ``"pgconv"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from bayesym.groups.d4 import d4_subgroup
from bayesym.groups.finite import FiniteGroup
from bayesym.layers._checks import check_channels
from bayesym.layers.conv import PaddingMode
from bayesym.layers.group_conv import GroupConv2d, LiftingConv2d
from bayesym.layers.paths import PathSum, plain_path
from bayesym.layers.pointwise_group_conv import PointwiseGroupConv2d

__all__ = [
    "GROUP_PATH_KINDS",
    "GROUP_PATHS",
    "conv_plus_gconv",
    "conv_plus_pgconv",
    "ffc_plus_conv_plus_gconv",
    "ffc_plus_conv_plus_pgconv",
    "group_conv_layer",
    "group_path_sum",
    "resolve_group",
]

GROUP_PATH_KINDS: tuple[str, ...] = ("fc", "ffc", "sfc", "conv", "sconv", "gconv", "pgconv")
"""Path kinds :func:`group_path_sum` can combine."""

GROUP_PATHS: tuple[str, ...] = ("gconv", "pgconv")
"""The path kinds on group feature maps (full and pointwise group convolution)."""


def resolve_group(group: FiniteGroup | str) -> FiniteGroup:
    """A subgroup of D4 from its name (``"C4"``, ``"D4"``, ...) or the group itself."""
    if isinstance(group, str):
        return d4_subgroup(group)
    if not isinstance(group, FiniteGroup):
        raise TypeError(
            f"group must be a FiniteGroup or a D4 subgroup name, got {type(group).__name__}"
        )
    return group


def group_conv_layer(
    in_channels: int,
    out_channels: int,
    *,
    kernel_size: int = 3,
    group: FiniteGroup | str = "C4",
    lifting: bool = False,
    pointwise: bool = False,
    padding_mode: PaddingMode = "circular",
    bias: bool = True,
) -> nn.Module:
    """GCONV over ``group``: :class:`LiftingConv2d` if ``lifting``, else :class:`GroupConv2d`.

    ``pointwise=True`` gives the layer-wise paper's public GCONV instead:
    :class:`PointwiseGroupConv2d`, one filter bank ``T_g ψ`` per group element on the matching
    input copy. Lifting, that model stacks the rotated copies of the image and applies one
    convolution to each, which is :class:`LiftingConv2d` again (see
    :mod:`~bayesym.layers.pointwise_group_conv`).
    """
    if lifting:
        layer_class: type[nn.Module] = LiftingConv2d
    else:
        layer_class = PointwiseGroupConv2d if pointwise else GroupConv2d
    return layer_class(
        in_channels,
        out_channels,
        kernel_size,
        resolve_group(group),
        padding_mode=padding_mode,
        bias=bias,
    )


def group_path_sum(
    paths: Sequence[str],
    in_channels: int,
    out_channels: int,
    *,
    spatial: tuple[int, int],
    kernel_size: int = 3,
    group: FiniteGroup | str = "C4",
    lifting: bool = False,
    padding_mode: PaddingMode = "circular",
    bias: bool = True,
) -> PathSum:
    """A relaxed layer on group feature maps from path kinds (see the module docstring).

    Args:
        paths: path kinds from :data:`GROUP_PATH_KINDS`, including at least one of
            :data:`GROUP_PATHS`; they become the keys of ``layer.paths`` in this order.
        in_channels: ``C_in`` per group element (image channels when ``lifting``).
        out_channels: ``C_out`` per group element.
        spatial: ``(H, W)``.
        kernel_size: filter size of the convolutional paths.
        group: ``G <= D4`` or its name.
        lifting: the input is an image ``[N, C_in, H, W]`` (first layer of a network).
        padding_mode: padding of every convolutional path.
        bias: per-output-channel bias in the first group path (shared over the group axis).

    Returns:
        A :class:`PathSum` whose ``group_paths`` are its ``"gconv"``/``"pgconv"`` paths.

    Raises:
        ValueError: for unknown or repeated path kinds, or no group path.

    Example:
        >>> layer = group_path_sum(["ffc", "conv", "gconv"], 2, 3, spatial=(4, 4))
        >>> list(layer.paths), layer.out_group_size
        (['ffc', 'conv', 'gconv'], 4)
    """
    owner = "group_path_sum"
    unknown = [p for p in paths if p not in GROUP_PATH_KINDS]
    group_paths = [p for p in paths if p in GROUP_PATHS]
    if unknown or len(set(paths)) != len(paths) or not group_paths:
        raise ValueError(
            f"{owner}: paths must be distinct kinds from {GROUP_PATH_KINDS} including one of "
            f"{GROUP_PATHS}, got {list(paths)}"
        )
    check_channels(in_channels, out_channels, owner=owner)
    g = resolve_group(group)
    size = g.order
    plain_in = in_channels if lifting else in_channels * size

    def build(kind: str) -> nn.Module:
        if kind in GROUP_PATHS:
            return group_conv_layer(
                in_channels, out_channels, kernel_size=kernel_size, group=g, lifting=lifting,
                pointwise=kind == "pgconv", padding_mode=padding_mode,
                bias=bias and kind == group_paths[0],
            )  # fmt: skip
        return plain_path(
            kind, plain_in, out_channels * size, spatial=spatial, kernel_size=kernel_size,
            padding_mode=padding_mode,
        )  # fmt: skip

    return PathSum(
        {name: build(name) for name in paths},
        group_paths=group_paths,
        in_group_size=None if lifting else size,
        out_group_size=size,
    )


def ffc_plus_conv_plus_gconv(in_channels: int, out_channels: int, **options: Any) -> PathSum:
    """F-FC + CONV + GCONV (Sec. 6.3): :func:`group_path_sum` of ``ffc``, ``conv``, ``gconv``.

    Weights (non-lifting): ``2 (C' |G|)(C |G|) XY + (C' |G|)(C |G|) S^2 + C' C |G| S^2``.
    """
    return group_path_sum(("ffc", "conv", "gconv"), in_channels, out_channels, **options)


def conv_plus_gconv(in_channels: int, out_channels: int, **options: Any) -> PathSum:
    """CONV + GCONV, a ``C_1`` layer beside a ``G`` layer (EquiNAS's RPP baseline with ``D4``).

    :func:`group_path_sum` of ``conv`` (on the merged channel/group axes) and ``gconv``.
    """
    return group_path_sum(("conv", "gconv"), in_channels, out_channels, **options)


def ffc_plus_conv_plus_pgconv(in_channels: int, out_channels: int, **options: Any) -> PathSum:
    """F-FC + CONV + the paper's GCONV (Sec. 6.3 as in its public model).

    :func:`group_path_sum` of ``ffc``, ``conv``, ``pgconv``. Weights (non-lifting):
    ``2 (C' |G|)(C |G|) XY + (C' |G|)(C |G|) S^2 + C' C S^2`` (CONV : GCONV = ``|G|²`` : 1).
    """
    return group_path_sum(("ffc", "conv", "pgconv"), in_channels, out_channels, **options)


def conv_plus_pgconv(in_channels: int, out_channels: int, **options: Any) -> PathSum:
    """CONV + the paper's GCONV: :func:`group_path_sum` of ``conv`` and ``pgconv``."""
    return group_path_sum(("conv", "pgconv"), in_channels, out_channels, **options)
