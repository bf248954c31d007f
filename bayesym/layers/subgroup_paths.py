r"""Relaxed layers with one group-convolution path per subgroup, on feature maps of one layout.

A *subgroup path* over ``K <= G`` reads a G-feature map ``[N, C_in, |G|, H, W]`` as a
K-feature map (:func:`~bayesym.groups.restriction.restrict_feature_map`,
``[N, C_in·[G:K], |K|, H, W]``), applies a K-group convolution with ``C_out·[G:K]`` output
K-channels, and reads the result back as a G-feature map
(:func:`~bayesym.groups.restriction.expand_feature_map`, ``[N, C_out, |G|, H, W]``); lifting,
it reads images ``[N, C_in, H, W]``. The re-readings commute with the regular action of every
``h ∈ K``, so the path is exactly equivariant to ``K`` (and to every cyclic shift with circular
padding), and in general to nothing more. Its parameters are those of the EquiNAS block over
``K`` with the same expanded width: ``[G:K]²·|K|·C_in·C_out·k²`` weights (lifting:
``[G:K]·C_in·C_out·k²``), i.e. ``[G:K]`` times those of the G-path.

:func:`subgroup_path_sum` sums such paths, one per subgroup, as a
:class:`~bayesym.layers.paths.PathSum` keyed by the subgroup names: a prior per path lets the
marginal likelihood choose among C1 ... D4 per layer, and with every path but ``K``'s at zero
the layer is exactly K-equivariant (:meth:`~bayesym.layers.paths.PathSum.strict_symmetry`).
The bias (per output channel, shared over the group axis) sits only in the path of the largest
subgroup, so zeroing the other paths leaves that path's symmetry intact.

Example:
    >>> layer = subgroup_path_sum(["C1", "C4", "D4"], 2, 3)
    >>> list(layer.paths), layer.path_symmetries["C4"].describe()
    (['C1', 'C4', 'D4'], 'translations x C4')
    >>> import torch
    >>> layer(torch.randn(1, 2, 8, 6, 6)).shape
    torch.Size([1, 3, 8, 6, 6])
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from bayesym.groups.finite import FiniteGroup, coset_index, is_subgroup
from bayesym.groups.restriction import expand_feature_map, restrict_feature_map
from bayesym.layers._checks import check_channels
from bayesym.layers.conv import PaddingMode
from bayesym.layers.group_conv import GroupConv2d, LiftingConv2d
from bayesym.layers.group_paths import resolve_group
from bayesym.layers.paths import PathSum
from bayesym.layers.symmetry import LayerSymmetry

__all__ = ["SubgroupPath", "subgroup_path_sum"]


class SubgroupPath(nn.Module):
    """A K-group convolution on G-feature maps (see the module docstring).

    Args:
        subgroup: ``K <= G`` (or its name).
        in_channels: ``C_in`` G-channels (image channels when ``lifting``).
        out_channels: ``C_out`` G-channels.
        kernel_size: odd filter size.
        group: the layout group ``G`` of the feature maps (default D4).
        lifting: the input is an image ``[N, C_in, H, W]``.
        padding_mode: padding of the convolution.
        bias: per-output-K-channel bias (equivariant to ``K`` only).

    Input ``[N, C_in, |G|, H, W]`` (lifting: ``[N, C_in, H, W]``); output
    ``[N, C_out, |G|, H, W]``.

    Raises:
        ValueError: if ``subgroup`` is not a subgroup of ``group``, or bad channel counts.
    """

    def __init__(
        self,
        subgroup: FiniteGroup | str,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        group: FiniteGroup | str = "D4",
        lifting: bool = False,
        padding_mode: PaddingMode = "circular",
        bias: bool = False,
    ) -> None:
        super().__init__()
        check_channels(in_channels, out_channels, owner="SubgroupPath")
        self.group, self.subgroup = resolve_group(group), resolve_group(subgroup)
        if self.subgroup.root is not self.group.root or not is_subgroup(self.subgroup, self.group):
            raise ValueError(
                f"SubgroupPath: {self.subgroup.name} is not a subgroup of the layout group "
                f"{self.group.name}"
            )
        cosets = coset_index(self.group, self.subgroup)
        self.lifting = lifting
        if lifting:
            self.conv: LiftingConv2d | GroupConv2d = LiftingConv2d(
                in_channels, out_channels * cosets, kernel_size, self.subgroup,
                padding_mode=padding_mode, bias=bias,
            )  # fmt: skip
        else:
            self.conv = GroupConv2d(
                in_channels * cosets, out_channels * cosets, kernel_size, self.subgroup,
                padding_mode=padding_mode, bias=bias,
            )  # fmt: skip

    @property
    def symmetry(self) -> LayerSymmetry:
        """``K`` (by name) and, with circular padding, every cyclic shift."""
        return self.conv.symmetry

    def forward(self, x: Tensor) -> Tensor:
        """Restrict to ``K``, convolve, expand back to ``G`` (class docstring for shapes)."""
        if not self.lifting:
            x = restrict_feature_map(x, self.group, self.subgroup)
        return expand_feature_map(self.conv(x), self.group, self.subgroup)


def subgroup_path_sum(
    subgroups: Sequence[FiniteGroup | str],
    in_channels: int,
    out_channels: int,
    *,
    kernel_size: int = 3,
    group: FiniteGroup | str = "D4",
    lifting: bool = False,
    padding_mode: PaddingMode = "circular",
    bias: bool = True,
) -> PathSum:
    """One :class:`SubgroupPath` per subgroup, summed (see the module docstring).

    Args:
        subgroups: distinct subgroups of ``group`` (or names); the path keys are their names,
            in this order.
        in_channels: ``C_in`` G-channels (image channels when ``lifting``).
        out_channels: ``C_out`` G-channels.
        kernel_size: odd filter size.
        group: the layout group ``G``.
        lifting: the input is an image.
        padding_mode: padding of every path.
        bias: a bias in the path of the largest subgroup (the first of largest order).

    Raises:
        ValueError: for no subgroups or repeated ones.
    """
    resolved = [resolve_group(k) for k in subgroups]
    names = [k.name for k in resolved]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"subgroup_path_sum: needs distinct subgroups, got {names}")
    layout = resolve_group(group)
    largest = max(range(len(resolved)), key=lambda i: (resolved[i].order, -i))
    paths = {
        k.name: SubgroupPath(
            k, in_channels, out_channels, kernel_size=kernel_size, group=layout,
            lifting=lifting, padding_mode=padding_mode, bias=bias and i == largest,
        )
        for i, k in enumerate(resolved)
    }  # fmt: skip
    return PathSum(
        paths,
        group_paths=names,
        in_group_size=None if lifting else layout.order,
        out_group_size=layout.order,
    )
