"""CONV: stride-1 convolution with stationary weights (Eq. (3) of the layer-wise paper).

With circular padding (the default) the layer is *exactly* equivariant to every cyclic
shift of the ``H x W`` grid; other padding modes break equivariance at the border.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn

from bayesym.layers._checks import (
    PADDING_MODES,
    PaddingMode,
    check_conv_sizes,
    check_feature_map,
    check_padding_mode,
)
from bayesym.layers.symmetry import TRIVIAL_SYMMETRY, LayerSymmetry

__all__ = [
    "padding_symmetry",
    "PADDING_MODES",
    "PaddingMode",
    "SameConv2dBase",
    "SpatialConv2d",
    "check_padding_mode",
    "pad_same",
    "same_conv2d",
]


def padding_symmetry(padding_mode: PaddingMode) -> LayerSymmetry:
    """The symmetry of a ``same`` convolution: cyclic shifts with circular padding, else none."""
    return LayerSymmetry(translations=True) if padding_mode == "circular" else TRIVIAL_SYMMETRY


def _circular_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    height, width = x.shape[-2:]
    if pad <= height and pad <= width:
        # Two concatenations: cheaper forward and backward than an index_select.
        x = torch.cat([x[..., height - pad :, :], x, x[..., :pad, :]], dim=-2)
        return torch.cat([x[..., width - pad :], x, x[..., :pad]], dim=-1)
    # Index arithmetic when the padding wraps around more than once (e.g. a 3x3 filter on
    # the 1x1 maps at the end of the backbone), which F.pad(mode="circular") refuses.
    rows = torch.arange(-pad, height + pad, device=x.device) % height
    cols = torch.arange(-pad, width + pad, device=x.device) % width
    return x.index_select(-2, rows).index_select(-1, cols)


def same_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    padding_mode: PaddingMode,
) -> torch.Tensor:
    """Stride-1 cross-correlation whose output has the input's spatial size.

    ``y[n, c', h, w] = sum_{c, i, j} weight[c', c, i, j] * x_pad[n, c, h + i, w + j] + bias[c']``
    with ``x_pad`` the input extended by ``(S - 1) / 2`` pixels on every side.

    Args:
        x: ``[N, C_in, H, W]``.
        weight: ``[C_out, C_in, S, S]`` with ``S`` odd.
        bias: ``[C_out]`` or None.
        padding_mode: one of :data:`PADDING_MODES`.

    Returns:
        ``[N, C_out, H, W]``.
    """
    return F.conv2d(pad_same(x, weight.shape[-1] // 2, padding_mode), weight, bias)


def pad_same(x: torch.Tensor, pad: int, padding_mode: PaddingMode) -> torch.Tensor:
    """Extend ``x: [N, C, H, W]`` by ``pad`` pixels on every side as :func:`same_conv2d` does.

    Curvature adapters build their conv patches with exactly this function.

    Returns:
        ``[N, C, H + 2 pad, W + 2 pad]``.
    """
    if pad <= 0:
        return x
    if padding_mode == "circular":
        return _circular_pad(x, pad)
    if padding_mode == "zeros":
        return F.pad(x, (pad, pad, pad, pad), mode="constant", value=0.0)
    if padding_mode == "reflect" and pad >= min(x.shape[-2:]):
        raise ValueError(
            f"reflect padding of {pad} pixels needs H and W > {pad}, got input {list(x.shape)}"
        )
    return F.pad(x, (pad, pad, pad, pad), mode=padding_mode)


class SameConv2dBase(nn.Module, ABC):
    """What the stride-1 'same' convolutions share (arguments: see the concrete classes).

    Checked sizes and padding mode, the padding's symmetry and the forward pass
    ``same_conv2d(x, filter(), bias)``; a subclass holds its parameters (``bias`` among them,
    ``[C_out]`` or None) and builds its ``[C_out, C_in, S, S]`` filter in :meth:`filter`.
    """

    bias: nn.Parameter | None

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, padding_mode: PaddingMode
    ) -> None:
        super().__init__()
        sizes = check_conv_sizes(self, in_channels, out_channels, kernel_size, padding_mode)
        self.in_channels, self.out_channels, self.kernel_size, self.padding_mode = sizes

    @abstractmethod
    def filter(self) -> torch.Tensor:
        """The filter ``[C_out, C_in, S, S]`` the layer convolves with."""

    @property
    def symmetry(self) -> LayerSymmetry:
        """Cyclic-shift equivariance with circular padding, none otherwise."""
        return padding_symmetry(self.padding_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve ``x: [N, C_in, H, W]`` with :meth:`filter`, returning ``[N, C_out, H, W]``."""
        filter_ = self.filter()
        check_feature_map(x, owner=self, channels=self.in_channels, dtype=filter_.dtype)
        return same_conv2d(x, filter_, self.bias, self.padding_mode)


class SpatialConv2d(SameConv2dBase):
    r"""CONV layer: stride-1 'same' convolution with stationary weights (Eq. (3)).

    .. math::
        y(c', x', y') = \sum_c \sum_{x, y} x(c, x, y)\, \bar\theta(c', c, x' - x, y' - y) + b(c'),

    with :math:`\bar\theta` supported on an ``S x S`` window: ``C_out * C_in * S^2`` weights
    (plus ``C_out`` biases). With ``padding_mode="circular"`` the layer commutes with every
    cyclic shift of the grid (exact translation equivariance); any other padding mode breaks
    it at the border, and :attr:`symmetry` says so.

    This is a separate class from ``nn.Conv2d`` on purpose: curvature back-ends that
    recognise ``nn.Conv2d`` build their input patches with zero padding even for circular
    convolutions, so this layer must go through an explicit adapter.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        kernel_size: odd filter size ``S`` (default 3).
        padding_mode: see :data:`PaddingMode` (default ``"circular"``).
        bias: add a learnable per-output-channel bias.

    Shape:
        ``x: [N, C_in, H, W] -> [N, C_out, H, W]`` for any ``H, W``.

    Attributes:
        weight: ``[C_out, C_in, S, S]`` stationary filter :math:`\bar\theta`.
        bias: ``[C_out]`` or None.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> conv = SpatialConv2d(2, 3, kernel_size=3)
        >>> x = torch.randn(4, 2, 5, 5)
        >>> shifted = torch.roll(x, shifts=(1, 2), dims=(-2, -1))
        >>> torch.allclose(conv(shifted), torch.roll(conv(x), (1, 2), (-2, -1)), atol=1e-6)
        True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        padding_mode: PaddingMode = "circular",
        bias: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding_mode)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default init: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, fan_in = C_in S^2."""
        bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size**2)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def filter(self) -> torch.Tensor:
        r"""The stationary filter :math:`\bar\theta`: ``weight`` itself."""
        return self.weight

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"padding_mode={self.padding_mode!r}, bias={self.bias is not None}"
        )
