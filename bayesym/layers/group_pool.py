"""Pooling that keeps group equivariance: over the group axis, and D4-symmetric downsampling.

* :class:`GroupPool` — mean or max over the group axis,
  ``[N, C, |G|, H, W] -> [N, C, H, W]``. If the input transforms by the regular action,
  the output transforms by the image action only: the channels are G-invariant. A head
  that skips this step is not invariant.
* :class:`SymmetricAvgPool2d` — stride-2 average pooling whose sampling grid is mapped to
  itself by every rotation/flip of the square: ``2 x 2`` windows on even sizes, ``3 x 3``
  windows with zero padding 1 on odd sizes (window centres at the even positions
  ``0, 2, .., H-1``, which the flip ``p -> H-1-p`` maps to themselves only when ``H`` is
  odd). Thus it commutes exactly with the D4 image/regular actions for any square input.
  Translation equivariance survives only for shifts by multiples of 2.

Example:
    >>> import torch
    >>> pool = SymmetricAvgPool2d()
    >>> pool(torch.randn(2, 3, 8, 7, 7)).shape, pool(torch.randn(2, 3, 8, 14, 14)).shape
    (torch.Size([2, 3, 8, 4, 4]), torch.Size([2, 3, 8, 7, 7]))
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from bayesym.layers._checks import check_input_shape

__all__ = ["GroupPool", "SymmetricAvgPool2d"]


class GroupPool(nn.Module):
    """Mean or max over the group axis: ``[N, C, |G|, H, W] -> [N, C, H, W]``.

    Args:
        mode: ``"mean"`` (default, as in the EquiNAS head) or ``"max"``.

    Raises:
        ValueError: Unknown mode; on call, input that is not 5-D.
    """

    def __init__(self, mode: Literal["mean", "max"] = "mean") -> None:
        super().__init__()
        if mode not in ("mean", "max"):
            raise ValueError(f"GroupPool: mode must be 'mean' or 'max', got {mode!r}")
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        """``x: [N, C, |G|, H, W]`` -> ``[N, C, H, W]``."""
        check_input_shape(
            x, ("N", "C", "|G|", "H", "W"), owner="GroupPool", what="a group feature map"
        )
        return x.mean(dim=2) if self.mode == "mean" else x.amax(dim=2)

    def extra_repr(self) -> str:
        """Constructor arguments, for ``repr``."""
        return f"mode={self.mode!r}"


class SymmetricAvgPool2d(nn.Module):
    """Stride-2 average pooling with a D4-symmetric sampling grid (module docstring).

    Acts on the last two dims of ``x: [..., H, W]`` (images or group feature maps).
    Output size ``H/2`` for even ``H``, ``(H+1)/2`` for odd ``H`` (per axis).

    Raises:
        ValueError: On call, input with fewer than 3 dims.
    """

    def forward(self, x: Tensor) -> Tensor:
        """``x: [..., H, W]`` -> ``[..., ceil(H/2), ceil(W/2)]``."""
        if x.dim() < 3:
            raise ValueError(f"SymmetricAvgPool2d: expected [..., H, W], got {list(x.shape)}")
        lead, (height, width) = x.shape[:-2], x.shape[-2:]
        flat = x.reshape(-1, 1, height, width)
        kernel = (2 if height % 2 == 0 else 3, 2 if width % 2 == 0 else 3)
        padding = (kernel[0] // 2 if height % 2 else 0, kernel[1] // 2 if width % 2 else 0)
        out = F.avg_pool2d(flat, kernel, stride=2, padding=padding, count_include_pad=True)
        return out.reshape(*lead, *out.shape[-2:])
