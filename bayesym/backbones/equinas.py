"""The EquiNAS backbone: lifting + group convolutions with per-layer groups (EquiNAS App. B).

Architecture (App. B of the EquiNAS paper, widths scaled by ``width`` for CPU use):

* ``depth`` convolution blocks (paper: 8): block 0 is a lifting convolution, the others
  group convolutions; each is followed by an equivariant batch norm
  (:class:`~bayesym.layers.group_norm.GroupBatchNorm`, statistics shared over the group
  axis; ``norm="group_batch"``, the paper's) or by nothing (``norm="none"``, the
  convolutions then carry a bias) and a ReLU; a D4-symmetric stride-2 average pool
  (:class:`~bayesym.layers.group_pool.SymmetricAvgPool2d`) follows every ``pool_every``-th
  block except the last (paper: every other layer; 28 -> 14 -> 7 -> 4, 16 -> 8 -> 4 -> 2).
* Channels: the first half of the blocks has ``width`` D4-channels, the second half
  ``2·width`` (paper: 16 and 32); a block over ``K`` has ``[D4:K]`` times as many channels,
  so every block has the same width once expanded to a plain convolution (EquiNAS Sec. 6).
* Head: mean (or max) pooling over the group axis, global spatial mean, then
  ``Linear -> BatchNorm1d -> ReLU -> Linear`` to the classes (``norm="none"``:
  ``Linear -> ReLU -> Linear``).

The norm-free network (``norm="none"``) is what priors need: batch norm makes the scale of
the preceding weights unidentifiable and has no curvature block. Without normalisation the
default initialisation would shrink the activations ~6x per block, so its convolutions and
linear layers are rescaled once at construction to unit output second moment on a fixed
Gaussian probe (LSUV, :mod:`bayesym.backbones.initialisation`; a scalar per layer, so every
symmetry is kept).

Per-layer groups must be non-increasing with depth (``G_{l+1} <= G_l``). Between blocks
whose groups differ, the G-feature map is re-read as a ``G_{l+1}``-feature map
(:func:`~bayesym.groups.restriction.restrict_feature_map`). With ``layer_type="mixed"``
the blocks are [G]-mixed layers (EquiNAS_D) whose ``groups`` are the layout groups
(default D4) mixing all named subgroups of each.

A strict backbone (every block over ``G``) has G-invariant logits in train and eval mode.
:meth:`EquiNASNet.relax_layer` applies the relaxation morphism to one block (EquiNAS_E),
returning a new network with identical logits; :meth:`EquiNASNet.relaxations` lists the
allowed ``(block, subgroup)`` moves that keep the groups non-increasing.

Example:
    >>> import torch
    >>> net = EquiNASNet(EquiNASConfig(width=1, depth=4), groups="C4")
    >>> net(torch.randn(2, 1, 16, 16)).shape
    torch.Size([2, 10])
    >>> child = net.eval().relax_layer(3, "C2")
    >>> [g.name for g in child.groups]
    ['C4', 'C4', 'C4', 'C2']
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn

from bayesym.backbones.initialisation import scale_layer
from bayesym.checks import is_positive_int
from bayesym.groups.d4 import d4_subgroup, dihedral4
from bayesym.groups.finite import FiniteGroup, coset_index, is_subgroup
from bayesym.groups.lattice import d4_lattice
from bayesym.groups.restriction import restrict_feature_map
from bayesym.layers.conv import PaddingMode, check_padding_mode
from bayesym.layers.group_conv import GroupConv2d, LiftingConv2d, check_d4_subgroup
from bayesym.layers.group_norm import GroupBatchNorm
from bayesym.layers.group_pool import GroupPool, SymmetricAvgPool2d
from bayesym.layers.mixed import MixedGroupConv2d, MixedLiftingConv2d
from bayesym.layers.morphism import adapt_input_layout, relax, relax_pooled_linear

__all__ = ["NORMS", "EquiNASBlock", "EquiNASConfig", "EquiNASNet", "PooledBlockNet"]

GroupSpec = str | FiniteGroup
BlockConv = LiftingConv2d | GroupConv2d | MixedLiftingConv2d | MixedGroupConv2d
"""The convolution of an :class:`EquiNASBlock`."""

NORMS: tuple[str, ...] = ("group_batch", "none")
"""Values of :attr:`EquiNASConfig.norm`."""


@dataclass(frozen=True)
class EquiNASConfig:
    """Sizes and options of :class:`EquiNASNet`.

    Attributes:
        in_channels: Image channels.
        num_classes: Output logits.
        width: D4-channels of the first half of the blocks (second half: ``2·width``);
            paper: 16.
        depth: Number of convolution blocks (paper: 8), at least 2.
        kernel_size: Odd kernel size.
        pool_every: Stride-2 pooling after every ``pool_every``-th block except the last
            (paper: 2); 0 disables pooling.
        hidden_features: Width of the hidden linear layer (default ``16·width``).
        padding_mode: ``"circular"`` (default), ``"zeros"``, ``"reflect"`` or ``"replicate"``.
        group_pooling: ``"mean"`` (paper; needed by :meth:`EquiNASNet.relax_layer` on the
            last block) or ``"max"``.
        layer_type: ``"fixed"`` (one group per block) or ``"mixed"`` ([G]-mixed blocks).
        norm: ``"group_batch"`` (the paper's: group batch norm per block, batch norm in the
            head) or ``"none"`` (no normalisation, convolution biases, unit-moment
            initialisation; see the module docstring).
    """

    in_channels: int = 1
    num_classes: int = 10
    width: int = 2
    depth: int = 8
    kernel_size: int = 3
    pool_every: int = 2
    hidden_features: int | None = None
    padding_mode: PaddingMode = "circular"
    group_pooling: Literal["mean", "max"] = "mean"
    layer_type: Literal["fixed", "mixed"] = "fixed"
    norm: Literal["group_batch", "none"] = "group_batch"

    def __post_init__(self) -> None:
        self._check_sizes()
        self._check_pooling_and_kernel()
        self._check_choices()

    def _check_sizes(self) -> None:
        positive = {
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "width": self.width,
            "kernel_size": self.kernel_size,
        }
        if self.hidden_features is not None:
            positive["hidden_features"] = self.hidden_features
        for name, value in positive.items():
            if not is_positive_int(value):
                raise ValueError(f"EquiNASConfig: {name} must be a positive int, got {value!r}")
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 2:
            raise ValueError(f"EquiNASConfig: depth must be an int >= 2, got {self.depth!r}")

    def _check_pooling_and_kernel(self) -> None:
        if isinstance(self.pool_every, bool) or not isinstance(self.pool_every, int):
            raise ValueError(f"EquiNASConfig: pool_every must be an int, got {self.pool_every!r}")
        if self.pool_every < 0:
            raise ValueError(f"EquiNASConfig: pool_every must be >= 0, got {self.pool_every}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"EquiNASConfig: kernel_size must be odd, got {self.kernel_size}")

    def _check_choices(self) -> None:
        check_padding_mode(self.padding_mode, owner="EquiNASConfig")
        if self.group_pooling not in ("mean", "max"):
            raise ValueError(
                f"EquiNASConfig: group_pooling must be 'mean' or 'max', got {self.group_pooling!r}"
            )
        if self.layer_type not in ("fixed", "mixed"):
            raise ValueError(
                f"EquiNASConfig: layer_type must be 'fixed' or 'mixed', got {self.layer_type!r}"
            )
        if self.norm not in NORMS:
            raise ValueError(
                f"EquiNASConfig: norm must be one of {', '.join(map(repr, NORMS))}, "
                f"got {self.norm!r}"
            )

    def base_channels(self, block: int) -> int:
        """D4-channels of ``block``: ``width`` in the first half, ``2·width`` after."""
        return self.width if block < self.depth // 2 else 2 * self.width

    def pools_after(self, block: int) -> bool:
        """Whether a stride-2 pool follows ``block``."""
        return self.pool_every > 0 and (block + 1) % self.pool_every == 0 and block < self.depth - 1


class EquiNASBlock(nn.Module):
    """Re-read the input to ``conv.group`` if needed, then conv -> norm -> ReLU (-> pool).

    Args:
        conv: Lifting / group (or mixed) convolution.
        norm: :class:`~bayesym.layers.group_norm.GroupBatchNorm` over the conv's group, or
            ``None`` for none (``self.norm`` is then an ``nn.Identity``).
        pool: Whether to apply :class:`~bayesym.layers.group_pool.SymmetricAvgPool2d`.
        in_group: Group of the incoming feature map (``None`` for images).

    Input: ``[N, C_in, H, W]`` (lifting) or ``[N, C, |in_group|, H, W]``;
    output ``[N, C_out, |G|, H', W']``.
    """

    conv: BlockConv
    norm: nn.Module
    pool: SymmetricAvgPool2d | None
    in_group: FiniteGroup | None

    def __init__(
        self,
        conv: BlockConv,
        norm: GroupBatchNorm | None,
        pool: bool,
        in_group: FiniteGroup | None,
    ) -> None:
        super().__init__()
        self.conv = conv
        self.norm = nn.Identity() if norm is None else norm
        self.pool = SymmetricAvgPool2d() if pool else None
        self.in_group = in_group

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block (class docstring)."""
        if self.in_group is not None and self.in_group is not self.conv.group:
            x = restrict_feature_map(x, self.in_group, self.conv.group)
        x = torch.relu(self.norm(self.conv(x)))
        return x if self.pool is None else self.pool(x)


def _resolve(group: GroupSpec, owner: str) -> FiniteGroup:
    if isinstance(group, str):
        return d4_subgroup(group)
    return check_d4_subgroup(group, owner)


def _resolve_groups(
    config: EquiNASConfig, groups: GroupSpec | Sequence[GroupSpec]
) -> list[FiniteGroup]:
    """One resolved group per block, checked to be non-increasing with depth."""
    if isinstance(groups, (str, FiniteGroup)):
        groups = [groups] * config.depth
    resolved = [_resolve(g, "EquiNASNet") for g in groups]
    if len(resolved) != config.depth:
        raise ValueError(
            f"EquiNASNet: got {len(resolved)} groups for depth {config.depth}: "
            f"{[g.name for g in resolved]}"
        )
    for i in range(1, len(resolved)):
        if not is_subgroup(resolved[i], resolved[i - 1]):
            raise ValueError(
                f"EquiNASNet: groups must be non-increasing with depth, but block {i} "
                f"({resolved[i].name}) is not a subgroup of block {i - 1} "
                f"({resolved[i - 1].name})"
            )
    return resolved


def _block_conv(
    config: EquiNASConfig,
    block: int,
    group: FiniteGroup,
    in_channels: int,
    out_channels: int,
    mixed_components: Sequence[FiniteGroup] | None,
) -> BlockConv:
    """The convolution of ``block`` (lifting for block 0; mixed for ``layer_type="mixed"``)."""
    options: dict[str, Any] = {"padding_mode": config.padding_mode, "bias": config.norm == "none"}
    cls: type[BlockConv]
    if config.layer_type == "mixed":
        cls = MixedLiftingConv2d if block == 0 else MixedGroupConv2d
        kept = mixed_components
        if kept is not None:
            kept = [k for k in kept if is_subgroup(k, group)]
        options["components"] = kept
    else:
        cls = LiftingConv2d if block == 0 else GroupConv2d
    return cls(in_channels, out_channels, config.kernel_size, group, **options)


def _build_blocks(
    config: EquiNASConfig,
    groups: Sequence[FiniteGroup],
    mixed_components: Sequence[FiniteGroup] | None,
) -> tuple[list[EquiNASBlock], int]:
    """The blocks over ``groups`` in order, and the channels of the last one."""
    d4 = dihedral4()
    blocks: list[EquiNASBlock] = []
    in_channels, in_group = config.in_channels, None
    for i, group in enumerate(groups):
        channels = config.base_channels(i) * coset_index(d4, group)
        if in_group is not None:
            in_channels *= coset_index(in_group, group)
        conv = _block_conv(config, i, group, in_channels, channels, mixed_components)
        norm = GroupBatchNorm(channels, group) if config.norm == "group_batch" else None
        blocks.append(EquiNASBlock(conv, norm, config.pools_after(i), in_group))
        in_channels, in_group = channels, group
    return blocks, in_channels


class PooledBlockNet(nn.Module):
    """What the EquiNAS networks share: blocks, group then spatial pooling, an MLP head.

    Subclasses build :attr:`blocks`, :attr:`group_pool` and :attr:`head` and say how one block
    is rescaled at initialisation (:meth:`_scale_block`); the invariant features, the logits
    and the unit-moment initialisation (LSUV, module docstring) are common.
    """

    config: EquiNASConfig
    blocks: nn.ModuleList
    group_pool: GroupPool
    head: nn.Sequential

    def _scale_block(self, block: nn.Module, x: Tensor) -> None:
        """Rescale ``block``'s layer to a unit output moment on its input ``x``."""
        raise NotImplementedError

    @torch.no_grad()
    def _unit_moment_init(self) -> None:
        """LSUV rescaling of every block and of the head's linear layers, in network order."""
        generator = torch.Generator(device="cpu").manual_seed(0)
        ref = next(self.parameters())
        x = torch.randn(8, self.config.in_channels, 16, 16, generator=generator).to(ref)
        was_training = self.training
        self.eval()
        for block in self.blocks:
            self._scale_block(block, x)
            x = block(x)
        x = self.group_pool(x).mean(dim=(-2, -1))
        for module in self.head:
            if isinstance(module, nn.Linear):
                scale_layer(module, x)
            x = module(x)
        self.train(was_training)

    def features(self, x: Tensor) -> Tensor:
        """Invariant features ``[N, C_last]`` (group then spatial pooling)."""
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"{type(self).__name__}: expected images [N, {self.config.in_channels}, H, W], "
                f"got {list(x.shape)}"
            )
        for block in self.blocks:
            x = block(x)
        return self.group_pool(x).mean(dim=(-2, -1))

    def forward(self, x: Tensor) -> Tensor:
        """``x: [N, C_in, H, W]`` -> logits ``[N, num_classes]``."""
        return self.head(self.features(x))


class EquiNASNet(PooledBlockNet):
    """The EquiNAS network with one group per block (module docstring).

    Args:
        config: Sizes and options.
        groups: One group (name or object) for every block, or a single one for all
            blocks (default ``"D4"``). Must be non-increasing with depth. For
            ``layer_type="mixed"`` these are the layout groups.
        components: Mixed blocks only: component groups of every block (default: the
            named D4 subgroups of each layout group).

    Attributes:
        blocks: ``nn.ModuleList`` of :class:`EquiNASBlock`.
        group_pool: :class:`~bayesym.layers.group_pool.GroupPool`.
        head: ``Linear -> BatchNorm1d -> ReLU -> Linear`` (without the batch norm for
            ``norm="none"``).

    Raises:
        ValueError: Wrong number of groups, increasing groups, unknown group names; on call,
            wrong input shape.
    """

    config: EquiNASConfig
    blocks: nn.ModuleList
    group_pool: GroupPool
    head: nn.Sequential

    def __init__(
        self,
        config: EquiNASConfig,
        groups: GroupSpec | Sequence[GroupSpec] = "D4",
        *,
        components: Sequence[GroupSpec] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(config, EquiNASConfig):
            raise TypeError(f"EquiNASNet: config must be an EquiNASConfig, got {config!r}")
        resolved = _resolve_groups(config, groups)
        if components is not None and config.layer_type != "mixed":
            raise ValueError("EquiNASNet: components are only used with layer_type='mixed'")
        mixed_components = (
            None if components is None else [_resolve(k, "EquiNASNet") for k in components]
        )
        self.config = config
        blocks, in_channels = _build_blocks(config, resolved, mixed_components)
        self.blocks = nn.ModuleList(blocks)
        self.group_pool = GroupPool(config.group_pooling)
        hidden = config.hidden_features or 16 * config.width
        head_norm = [nn.BatchNorm1d(hidden)] if config.norm == "group_batch" else []
        self.head = nn.Sequential(
            nn.Linear(in_channels, hidden),
            *head_norm,
            nn.ReLU(),
            nn.Linear(hidden, config.num_classes),
        )
        if config.norm == "none":
            self._unit_moment_init()

    def _scale_block(self, block: nn.Module, x: Tensor) -> None:
        """Unit output moment for the block's convolution on its (re-read) input ``x``."""
        block = cast(EquiNASBlock, block)
        if block.in_group is not None and block.in_group is not block.conv.group:
            x = restrict_feature_map(x, block.in_group, block.conv.group)
        if isinstance(block.conv, (MixedLiftingConv2d, MixedGroupConv2d)):
            _scale_mixed(block.conv, x)
        else:
            scale_layer(block.conv, x)

    @property
    def groups(self) -> tuple[FiniteGroup, ...]:
        """The group of every block (layout groups for mixed blocks)."""
        return tuple(block.conv.group for block in self._typed_blocks())

    def _typed_blocks(self) -> list[EquiNASBlock]:
        """``self.blocks`` as what they are (``nn.ModuleList`` yields plain modules)."""
        return cast("list[EquiNASBlock]", list(self.blocks))

    # --- relaxation (EquiNAS_E) ------------------------------------------------------------
    def relaxations(self) -> tuple[tuple[int, FiniteGroup], ...]:
        """Every ``(block, H)`` with ``G_{block+1} <= H < G_block`` among the named subgroups.

        These are the children EquiNAS_E may create: relaxing one block to a proper
        subgroup while keeping the groups non-increasing with depth.
        """
        if self.config.layer_type != "fixed":
            return ()
        lattice, groups = d4_lattice(), self.groups
        moves = []
        for i, group in enumerate(groups):
            lower = groups[i + 1] if i + 1 < len(groups) else d4_subgroup("C1")
            for sub in lattice.between(lower=lattice.group(lower), upper=lattice.group(group)):
                if sub is not lattice.group(group):
                    moves.append((i, sub))
        return tuple(moves)

    def relax_layer(self, block: int, subgroup: GroupSpec) -> EquiNASNet:
        """A copy of the network with ``block`` relaxed to ``subgroup``; identical logits.

        The block's convolution and norm are relaxed (:func:`~bayesym.layers.morphism.relax`);
        the changed feature-map layouts around it are absorbed into the relaxed block's and
        the next block's weights (:func:`~bayesym.layers.morphism.adapt_input_layout`), or
        into the first head layer when the last block is relaxed
        (:func:`~bayesym.layers.morphism.relax_pooled_linear`). ``self`` is unchanged.

        Raises:
            TypeError: Mixed networks (they are relaxed through their architecture weights).
            ValueError: Bad block index, ``subgroup`` not ``<=`` the block's group, the next
                block's group not ``<= subgroup``, or max group pooling with the last block.
        """
        if self.config.layer_type != "fixed":
            raise TypeError("EquiNASNet.relax_layer: only networks with layer_type='fixed'")
        depth = len(self.blocks)
        if isinstance(block, bool) or not isinstance(block, int) or not 0 <= block < depth:
            raise ValueError(
                f"EquiNASNet.relax_layer: block must be in 0..{depth - 1}, got {block!r}"
            )
        sub = _resolve(subgroup, "EquiNASNet.relax_layer")
        group = self.groups[block]
        if not is_subgroup(sub, group):
            raise ValueError(
                f"EquiNASNet.relax_layer: {sub.name} is not a subgroup of block {block}'s "
                f"group {group.name}"
            )
        if block + 1 < depth and not is_subgroup(self.groups[block + 1], sub):
            raise ValueError(
                f"EquiNASNet.relax_layer: block {block + 1} has group "
                f"{self.groups[block + 1].name}, which is not a subgroup of {sub.name}; groups "
                "must stay non-increasing with depth"
            )
        if block + 1 == depth and self.config.group_pooling != "mean" and sub is not group:
            raise ValueError(
                "EquiNASNet.relax_layer: relaxing the last block preserves the function only "
                "with group_pooling='mean'"
            )
        new = copy.deepcopy(self)
        if sub is group:
            return new
        old_blocks, new_blocks = self._typed_blocks(), new._typed_blocks()
        target = new_blocks[block]
        # layer_type="fixed": block 0 is a LiftingConv2d, the others GroupConv2d.
        relaxed = relax(cast(LiftingConv2d | GroupConv2d, target.conv), sub)
        if target.in_group is not None:
            prev = target.in_group
            labels = _labels(old_blocks[block - 1].conv.out_channels, prev)
            expected = _restrict(_restrict(labels, prev, group), group, sub)
            provided = _restrict(labels, prev, sub)
            relaxed = adapt_input_layout(cast(GroupConv2d, relaxed), expected, provided)
        target.conv = relaxed
        if isinstance(target.norm, GroupBatchNorm):
            target.norm = relax(target.norm, sub)
        if block + 1 < depth:
            following = new_blocks[block + 1]
            later = following.conv.group
            labels = _labels(old_blocks[block].conv.out_channels, group)
            expected = _restrict(labels, group, later)
            provided = _restrict(_restrict(labels, group, sub), sub, later)
            following.conv = adapt_input_layout(
                cast(GroupConv2d, following.conv), expected, provided
            )
            following.in_group = sub
        else:
            first = cast(nn.Linear, new.head[0])
            new.head[0] = relax_pooled_linear(first, coset_index(group, sub))
        return new


@torch.no_grad()
def _scale_mixed(conv: MixedLiftingConv2d | MixedGroupConv2d, x: Tensor) -> None:
    """Unit output second moment of a mixed convolution by scaling its frozen norms.

    The output is linear in the norms (the bias is zero at initialisation), so one step is
    exact.
    """
    moment = float(conv(x).square().mean())
    if moment > 0:
        for component in conv.components:
            conv.component_norm(component.name).mul_(moment**-0.5)


def _labels(channels: int, group: FiniteGroup) -> Tensor:
    """Distinct integer labels of a ``[channels, |G|]`` feature map (as ``[C, |G|, 1, 1]``)."""
    return torch.arange(channels * group.order).reshape(channels, group.order, 1, 1)


def _restrict(labels: Tensor, group: FiniteGroup, sub: FiniteGroup) -> Tensor:
    if labels.dim() == 2:
        labels = labels[:, :, None, None]
    return restrict_feature_map(labels, group, sub)[:, :, 0, 0]
