"""The 8-block backbone of the layer-wise equivariance paper (App. F.1, Table 6).

Blocks ``k = 1..8`` have output widths ``a, 2a, 2a, 4a, 4a, 8a, 8a, 16a`` and nominal strides
``1, 2, 1, 2, 1, 2, 2, 2``; each block is ``layer -> [APS subsampling if stride 2] -> ReLU``,
where ``layer`` is built from a layer kind of :mod:`bayesym.layers.registry` (``"conv"`` gives
the strictly equivariant CNN, ``"ffc+conv"`` etc. the relaxed ones) and subsampling is
per-sample adaptive polyphase subsampling (App. F.2). A head of two 1x1 convolutions maps
``16a -> 64a -> classes`` (ReLU between); no normalisation layers.

Scaling to the input size. Exact shift equivariance of polyphase subsampling needs even
sizes, so the backbone keeps only as many stride-2 steps as the input can be halved
exactly: with ``k = min(v(H), v(W), 5)`` (``v`` = how often a size can be halved while even),
the **first** ``k`` nominally strided blocks subsample and the others keep stride 1. Any
spatial extent left after the 8 blocks is removed by global average pooling before the head:

============  ==================  =========================  ==============================
input         stride-2 blocks     block output sizes          before the head
============  ==================  =========================  ==============================
32 x 32       2, 4, 6, 7, 8       32,16,16,8,8,4,2,1          1 x 1 (as in the paper)
16 x 16       2, 4, 6, 7          16,8,8,4,4,2,1,1            1 x 1
28 x 28       2, 4                28,14,14,7,7,7,7,7          7 x 7 -> global average pool
============  ==================  =========================  ==============================

With a strict kind (every path translation-equivariant, circular padding) the logits are
exactly invariant to every cyclic shift of the input (up to ties in APS, measure-zero).

Group kinds (registry entries with ``group_axis=True``, e.g. ``"ffc+conv+gconv"`` with
``layer_options={"group": "C4"}``): the first block lifts images to group feature maps
``[N, a, |G|, H, W]`` (``lifting=True``), the following blocks keep the group axis (widths
count channels *per group element*), APS uses one phase for all group channels (which
commutes with rotations and flips of square grids of even size), and the features are
pooled over the group axis (group pooling: the mean, or the maximum as in the layer-wise
paper's model; ``group_pooling``, by default the kind's) and averaged over the grid before
the head. With only the GCONV paths switched on the logits are then invariant to ``G`` and
to cyclic shifts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, cast

import torch
from torch import nn

from bayesym.backbones.initialisation import scale_layer
from bayesym.checks import check_positive_int
from bayesym.layers._checks import check_feature_map, check_spatial
from bayesym.layers.conv import SpatialConv2d
from bayesym.layers.registry import GROUP_POOLINGS, LAYER_KINDS, layer_kind, make_layer
from bayesym.layers.subsampling import PolyphaseSubsample2d

__all__ = [
    "BLOCK_STRIDES",
    "BLOCK_WIDTHS",
    "LayerwiseBackbone",
    "LayerwiseBackboneConfig",
    "block_plan",
]

BLOCK_WIDTHS: tuple[int, ...] = (1, 2, 2, 4, 4, 8, 8, 16)
"""Output width of each block in units of the width ``a`` (App. F.1)."""

BLOCK_STRIDES: tuple[int, ...] = (1, 2, 1, 2, 1, 2, 2, 2)
"""Nominal stride of each block for 32 x 32 inputs (App. F.1)."""

HEAD_WIDTH = 64
"""Hidden width of the 1x1 head in units of ``a``."""


def _halvings(size: int) -> int:
    count = 0
    while size % 2 == 0:
        size //= 2
        count += 1
    return count


def block_plan(input_size: tuple[int, int]) -> tuple[tuple[int, tuple[int, int]], ...]:
    """Stride and input spatial size of every block for a given input size.

    Args:
        input_size: ``(H, W)``.

    Returns:
        One ``(stride, (H_k, W_k))`` per block, ``(H_k, W_k)`` the block's input size.

    Example:
        >>> [stride for stride, _ in block_plan((28, 28))]
        [1, 2, 1, 2, 1, 1, 1, 1]
    """
    height, width = check_spatial(input_size, owner="block_plan")
    budget = min(_halvings(height), _halvings(width), BLOCK_STRIDES.count(2))
    plan = []
    for nominal in BLOCK_STRIDES:
        stride = 2 if nominal == 2 and budget > 0 else 1
        budget -= stride == 2
        plan.append((stride, (height, width)))
        height, width = height // stride, width // stride
    return tuple(plan)


@dataclass(frozen=True)
class LayerwiseBackboneConfig:
    """Configuration of :class:`LayerwiseBackbone`.

    Attributes:
        layer_kind: a key of :data:`~bayesym.layers.registry.LAYER_KINDS` for the 8 blocks.
        width: the width multiplier ``a`` (paper: 10; 2 with a GCONV path).
        in_channels: image channels.
        num_classes: number of logits.
        input_size: ``(H, W)`` of the images.
        kernel_size: filter size of convolutional paths.
        layer_options: extra keyword options for every block's layer (e.g.
            ``{"padding_mode": "zeros"}``, ``{"num_anchors": 4}`` or ``{"group": "D4"}``);
            ``lifting`` is set by the backbone for group kinds.
        unit_variance_init: rescale the initial weights so every layer outputs unit second
            moment on a Gaussian probe (LSUV; :mod:`bayesym.backbones.initialisation`). Without
            it the 8 ReLU blocks shrink the signal ~6x each and training stalls.
        group_pooling: ``"mean"`` or ``"max"`` over the group axis before the head (group
            kinds only); ``None``: the layer kind's default
            (:attr:`~bayesym.layers.registry.LayerKind.group_pooling`).

    Raises:
        ValueError: for an unknown layer kind or non-positive sizes.
    """

    layer_kind: str = "conv"
    width: int = 10
    in_channels: int = 3
    num_classes: int = 10
    input_size: tuple[int, int] = (32, 32)
    kernel_size: int = 3
    layer_options: Mapping[str, Any] = field(default_factory=dict)
    unit_variance_init: bool = True
    group_pooling: str | None = None

    def __post_init__(self) -> None:
        owner = type(self).__name__
        if self.layer_kind not in LAYER_KINDS:
            raise ValueError(
                f"{owner}: unknown layer_kind {self.layer_kind!r}; known: {list(LAYER_KINDS)}"
            )
        check_positive_int(self.width, name="width", owner=owner)
        check_positive_int(self.in_channels, name="in_channels", owner=owner)
        check_positive_int(self.num_classes, name="num_classes", owner=owner)
        check_positive_int(self.kernel_size, name="kernel_size", owner=owner)
        if self.group_pooling is not None and self.group_pooling not in GROUP_POOLINGS:
            raise ValueError(
                f"{owner}: group_pooling must be None or one of {GROUP_POOLINGS}, "
                f"got {self.group_pooling!r}"
            )
        object.__setattr__(self, "input_size", check_spatial(self.input_size, owner=owner))
        object.__setattr__(self, "layer_options", MappingProxyType(dict(self.layer_options)))

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        # The read-only options view cannot be pickled or deep-copied (copy.deepcopy of a
        # model, torch.save of a whole model): rebuild from a plain dict instead.
        values = tuple(
            dict(v) if isinstance(v, MappingProxyType) else v
            for v in (getattr(self, f.name) for f in fields(self))
        )
        return (type(self), values)

    def __hash__(self) -> int:
        options = tuple(sorted(self.layer_options.items()))
        return hash(
            (
                self.layer_kind,
                self.width,
                self.in_channels,
                self.num_classes,
                self.input_size,
                self.kernel_size,
                options,
                self.unit_variance_init,
                self.group_pooling,
            )
        )


class LayerwiseBlock(nn.Module):
    """One block: ``layer -> [PolyphaseSubsample2d if stride 2] -> ReLU``.

    Attributes:
        layer: the (possibly relaxed) layer at the block's input resolution.
        subsample: :class:`PolyphaseSubsample2d` or ``nn.Identity``.
    """

    def __init__(self, layer: nn.Module, stride: int) -> None:
        super().__init__()
        self.layer = layer
        self.subsample = PolyphaseSubsample2d(2) if stride == 2 else nn.Identity()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``x: [N, C, H, W]``."""
        return torch.relu(self.subsample(self.layer(x)))


class LayerwiseBackbone(nn.Module):
    """The paper's 8-block network built from one layer kind (see the module docstring).

    Args:
        config: a :class:`LayerwiseBackboneConfig`.

    Shape:
        ``x: [N, in_channels, H, W] -> logits [N, num_classes]``.

    Attributes:
        blocks: ``nn.ModuleList`` of 8 :class:`LayerwiseBlock`.
        head: 1x1 convolutions ``16a -> 64a -> classes``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> config = LayerwiseBackboneConfig("ffc+conv", width=1, in_channels=1, input_size=(8, 8))
        >>> net = LayerwiseBackbone(config)
        >>> net(torch.randn(2, 1, 8, 8)).shape
        torch.Size([2, 10])
        >>> [name for name, _ in net.named_layers()][:2]
        ['blocks.0.layer', 'blocks.1.layer']
    """

    def __init__(self, config: LayerwiseBackboneConfig) -> None:
        super().__init__()
        if not isinstance(config, LayerwiseBackboneConfig):
            raise TypeError(
                f"{type(self).__name__} needs a LayerwiseBackboneConfig, "
                f"got {type(config).__name__}"
            )
        self.config = config
        a = config.width
        channels = config.in_channels
        blocks = []
        plan = block_plan(config.input_size)
        kind = layer_kind(config.layer_kind)
        self.group_axis = kind.group_axis
        self.group_pooling = config.group_pooling or kind.group_pooling
        for k, (multiplier, (stride, spatial)) in enumerate(zip(BLOCK_WIDTHS, plan, strict=True)):
            options = dict(config.layer_options)
            if self.group_axis:
                options["lifting"] = k == 0
            layer = make_layer(
                config.layer_kind,
                channels,
                multiplier * a,
                spatial=spatial,
                kernel_size=config.kernel_size,
                **options,
            )
            blocks.append(LayerwiseBlock(layer, stride))
            channels = multiplier * a
        self.blocks = nn.ModuleList(blocks)
        last_stride, last_spatial = plan[-1]
        self.final_spatial = (last_spatial[0] // last_stride, last_spatial[1] // last_stride)
        self.head = nn.Sequential(
            SpatialConv2d(channels, HEAD_WIDTH * a, kernel_size=1),
            nn.ReLU(),
            SpatialConv2d(HEAD_WIDTH * a, config.num_classes, kernel_size=1),
        )
        if config.unit_variance_init:
            self._unit_variance_init()

    @torch.no_grad()
    def _unit_variance_init(self) -> None:
        """LSUV-style rescaling on a fixed Gaussian probe (:mod:`.initialisation`)."""
        generator = torch.Generator(device="cpu").manual_seed(0)
        ref = next(self.parameters())
        x = torch.randn(
            16, self.config.in_channels, *self.config.input_size, generator=generator
        ).to(ref)
        was_training = self.training
        self.eval()
        for block in self.blocks:
            scale_layer(cast(nn.Module, block.layer), x)
            x = block(x)
        x = self._pool(x)
        for module in self.head:
            if isinstance(module, SpatialConv2d):
                scale_layer(module, x)
            x = module(x)
        self.train(was_training)

    def named_layers(self) -> list[tuple[str, nn.Module]]:
        """The 8 block layers (the ones a layer kind builds), with qualified names, in order."""
        return [
            (f"blocks.{k}.layer", cast(nn.Module, block.layer))
            for k, block in enumerate(self.blocks)
        ]

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, (|G|,) H, W] -> [N, C, 1, 1]``: the mean over the grid and group pooling.

        ``"max"`` takes the maximum over the group axis of the grid means (the same in every
        copy's frame, so it equals the paper's max over its rotated copies).
        """
        if x.dim() == 5 and self.group_pooling == "max":
            pooled = x.mean(dim=(3, 4)).amax(dim=2)
        else:
            pooled = x.mean(dim=tuple(range(2, x.dim())))  # over the group axis and grid
        return pooled.view(*pooled.shape, 1, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the 8 blocks pooled over the group axis and the grid: ``[N, 16a, 1, 1]``."""
        check_feature_map(
            x,
            owner=self._describe(),
            channels=self.config.in_channels,
            spatial=self.config.input_size,
        )
        for block in self.blocks:
            x = block(x)
        return self._pool(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, num_classes]`` for images ``x: [N, in_channels, H, W]``."""
        return self.head(self.features(x)).flatten(1)

    def _describe(self) -> str:
        c = self.config
        return f"{type(self).__name__}(layer_kind={c.layer_kind!r}, width={c.width})"
