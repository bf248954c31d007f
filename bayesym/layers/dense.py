"""FC: a fully-connected layer between feature maps (Eq. (1) of the layer-wise paper)."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from bayesym.layers._checks import (
    check_feature_map,
    check_spatial_sizes,
)
from bayesym.layers.symmetry import TRIVIAL_SYMMETRY, LayerSymmetry

__all__ = ["SpatialLinear"]


class SpatialLinear(nn.Module):
    r"""FC layer on feature maps: an unconstrained linear map between ``[C, H, W]`` maps (Eq. 1).

    .. math::
        y(c', x', y') = \sum_c \sum_{x, y} x(c, x, y)\, w(c', c, x', y', x, y) + b,

    stored as the matrix :math:`W \in \mathbb{R}^{C'XY \times CXY}` of the paper's flattened
    form ``y = W x``, with rows indexed by ``(c', x', y')`` and columns by ``(c, x, y)`` in
    ``torch.flatten`` order: ``C_out * C_in * H^2 * W^2`` weights. Because it *is* a
    linear layer on the flattened map, curvature back-ends can treat ``weight`` exactly
    like ``nn.Linear.weight`` (input ``x.flatten(1)``). No structural equivariance.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        spatial: ``(H, W)`` of input and output.
        bias: ``True`` for a per-output-channel bias ``b(c')`` (``[C_out]``, shared by all
            positions, like every other layer of this package), ``"unit"`` for a bias per
            output unit ``b(c', x', y')`` (``[C_out * H * W]``, exactly ``nn.Linear``'s bias,
            as in residual pathway priors), ``False`` for none.

    Shape:
        ``x: [N, C_in, H, W] -> [N, C_out, H, W]``.

    Attributes:
        weight: ``[C_out * H * W, C_in * H * W]``.
        bias: ``[C_out]``, ``[C_out * H * W]`` or None.
        bias_per: what one bias entry belongs to: ``"channel"`` (shared by its positions),
            ``"unit"`` (one output unit) or ``"none"`` (no bias).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> fc = SpatialLinear(2, 3, spatial=(4, 4), bias=False)
        >>> sum(p.numel() for p in fc.parameters()) == 3 * 2 * 4**2 * 4**2
        True
        >>> fc(torch.randn(5, 2, 4, 4)).shape
        torch.Size([5, 3, 4, 4])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        spatial: tuple[int, int],
        bias: bool | Literal["unit"] = True,
    ) -> None:
        super().__init__()
        sizes = check_spatial_sizes(self, in_channels, out_channels, spatial)
        self.in_channels, self.out_channels, self.spatial = sizes
        owner = type(self).__name__
        if bias not in (True, False, "unit"):
            raise ValueError(f"{owner}: bias must be True, False or 'unit', got {bias!r}")
        self.bias_per: Literal["none", "channel", "unit"] = (
            "unit" if bias == "unit" else ("channel" if bias else "none")
        )
        positions = self.spatial[0] * self.spatial[1]
        self.weight = nn.Parameter(torch.empty(out_channels * positions, in_channels * positions))
        self.bias: nn.Parameter | None
        if self.bias_per == "channel":
            self.bias = nn.Parameter(torch.empty(out_channels))
        elif self.bias_per == "unit":
            self.bias = nn.Parameter(torch.empty(out_channels * positions))
        else:
            self.bias = None
        self.reset_parameters()

    def __setstate__(self, state: dict[str, Any]) -> None:
        # whole layers pickled before ``bias_per`` was called ``bias_kind``
        if "bias_kind" in state:
            state["bias_per"] = state.pop("bias_kind")
        super().__setstate__(state)

    def reset_parameters(self) -> None:
        """PyTorch's ``nn.Linear`` init with fan_in = ``C_in * H * W``."""
        bound = 1.0 / math.sqrt(self.weight.shape[1])
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def symmetry(self) -> LayerSymmetry:
        """No structural symmetry."""
        return TRIVIAL_SYMMETRY

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``y = W x + b`` to ``x: [N, C_in, H, W]``, returning ``[N, C_out, H, W]``."""
        check_feature_map(
            x, owner=self, channels=self.in_channels, spatial=self.spatial, dtype=self.weight.dtype
        )
        unit_bias = self.bias if self.bias_per == "unit" else None
        y = F.linear(x.flatten(1), self.weight, unit_bias)
        y = y.view(x.shape[0], self.out_channels, *self.spatial)
        if self.bias_per == "channel" and self.bias is not None:
            y = y + self.bias.view(-1, 1, 1)
        return y

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return (
            f"{self.in_channels}, {self.out_channels}, spatial={self.spatial}, "
            f"bias={self.bias_per!r}"
        )
