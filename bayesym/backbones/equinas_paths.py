"""The norm-free EquiNAS network with a path sum over subgroups in every block.

The same sizes as :class:`~bayesym.backbones.equinas.EquiNASNet` with ``norm="none"``
(``depth`` blocks, ``width`` D4-channels in the first half and ``2·width`` after, D4-symmetric
stride-2 pooling, group pooling, global mean, ``Linear -> ReLU -> Linear``), but every block
layer is a :func:`~bayesym.layers.subgroup_paths.subgroup_path_sum`: one group-convolution
path per subgroup ``K`` of D4, each reading and writing D4 feature maps
``[N, C, 8, H, W]``. A path over ``K`` has the parameters of the EquiNAS block over ``K``, so a
prior per path lets the marginal likelihood choose the group of every block, and the network
with only the ``K_b`` path of every block switched on computes what an EquiNAS network with
groups ``K_b`` can. With every path but D4's at zero the network is exactly D4-invariant.
Block ``b``'s relaxed layer is ``blocks.b.layer``. Initialisation: LSUV on a fixed probe,
each of the ``P`` paths of a block with ``1/P`` of the unit output moment
(:mod:`bayesym.backbones.initialisation`).

Example:
    >>> import torch
    >>> from bayesym.backbones.equinas import EquiNASConfig, PooledBlockNet
    >>> net = EquiNASPathNet(EquiNASConfig(width=1, depth=2, norm="none"), ("C1", "D4"))
    >>> list(net.blocks[0].layer.paths), net(torch.randn(2, 1, 8, 8)).shape
    (['C1', 'D4'], torch.Size([2, 10]))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from bayesym.backbones.equinas import EquiNASConfig, PooledBlockNet
from bayesym.backbones.initialisation import scale_layer
from bayesym.groups.d4 import dihedral4
from bayesym.groups.finite import FiniteGroup
from bayesym.layers.group_pool import GroupPool, SymmetricAvgPool2d
from bayesym.layers.paths import PathSum
from bayesym.layers.subgroup_paths import subgroup_path_sum

__all__ = ["EquiNASPathBlock", "EquiNASPathNet"]


class EquiNASPathBlock(nn.Module):
    """``layer -> ReLU (-> pool)`` on D4 feature maps.

    Args:
        layer: the block's :class:`~bayesym.layers.paths.PathSum` of subgroup paths.
        pool: whether a :class:`~bayesym.layers.group_pool.SymmetricAvgPool2d` follows.
    """

    layer: PathSum
    pool: SymmetricAvgPool2d | None

    def __init__(self, layer: PathSum, pool: bool) -> None:
        super().__init__()
        self.layer = layer
        self.pool = SymmetricAvgPool2d() if pool else None

    def forward(self, x: Tensor) -> Tensor:
        """``[N, C_in, (8,) H, W] -> [N, C_out, 8, H', W']``."""
        x = torch.relu(self.layer(x))
        return x if self.pool is None else self.pool(x)


class EquiNASPathNet(PooledBlockNet):
    """Norm-free EquiNAS network with one path per subgroup in every block (module docstring).

    Args:
        config: sizes; ``norm`` must be ``"none"`` and ``layer_type`` ``"fixed"``.
        subgroups: the subgroups of D4 (or names) with a path in every block.

    Raises:
        ValueError: for a normalised or mixed configuration, or bad subgroups; on call, a
            wrong input shape.
    """

    def __init__(
        self, config: EquiNASConfig, subgroups: Sequence[FiniteGroup | str] = ("C1", "D4")
    ) -> None:
        super().__init__()
        if not isinstance(config, EquiNASConfig):
            raise TypeError(f"EquiNASPathNet: config must be an EquiNASConfig, got {config!r}")
        if config.norm != "none" or config.layer_type != "fixed":
            raise ValueError(
                "EquiNASPathNet: needs EquiNASConfig(norm='none', layer_type='fixed') (path "
                f"sums carry priors; batch norm would void them), got norm={config.norm!r}, "
                f"layer_type={config.layer_type!r}"
            )
        self.config = config
        self.layout = dihedral4()
        blocks, in_channels = [], config.in_channels
        for i in range(config.depth):
            out_channels = config.base_channels(i)
            layer = subgroup_path_sum(
                subgroups, in_channels, out_channels, kernel_size=config.kernel_size,
                group=self.layout, lifting=i == 0, padding_mode=config.padding_mode,
            )  # fmt: skip
            blocks.append(EquiNASPathBlock(layer, config.pools_after(i)))
            in_channels = out_channels
        self.blocks = nn.ModuleList(blocks)
        self.group_pool = GroupPool(config.group_pooling)
        hidden = config.hidden_features or 16 * config.width
        self.head = nn.Sequential(
            nn.Linear(in_channels, hidden), nn.ReLU(), nn.Linear(hidden, config.num_classes)
        )
        self._unit_moment_init()

    @property
    def subgroups(self) -> tuple[str, ...]:
        """Names of the subgroups with a path in every block."""
        return tuple(self._typed_blocks()[0].layer.paths)

    def _typed_blocks(self) -> list[EquiNASPathBlock]:
        """``self.blocks`` as what they are (``nn.ModuleList`` yields plain modules)."""
        return cast("list[EquiNASPathBlock]", list(self.blocks))

    def _scale_block(self, block: nn.Module, x: Tensor) -> None:
        """Unit output moment for the block's path sum, ``1/K`` per path."""
        scale_layer(cast(EquiNASPathBlock, block).layer, x)
