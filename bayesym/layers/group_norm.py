"""Equivariant batch normalisation of group feature maps: statistics shared over the group axis.

For ``y: [N, C, |G|, H, W]`` the statistics of channel ``c`` are taken over
``(N, |G|, H, W)`` (train mode), and the running statistics used in eval mode are one
number per channel. Since the regular action only permutes entries within
``(|G|, H, W)``, this commutes with every group element in train AND eval mode.

Per-group-channel statistics (``BatchNorm2d`` on ``[N, C·|G|, H, W]``, as in public
reference code) are equivariant in train mode (the batch statistics permute with the
channels) but not in eval mode: the running mean of channel ``(c, g)`` stays attached to
``g`` when the input is transformed.

Relaxed layers (:mod:`bayesym.layers.morphism`) produce channels ``(c, s)`` (channel-major,
``s`` a coset representative); ``shared_copies = [G:H]`` makes the normalisation share
statistics over all copies ``s`` of a base channel ``c``, so that relaxing a normalised
layer leaves the function unchanged in train and eval mode. The affine parameters are
per full channel.

Example:
    >>> import torch
    >>> from bayesym.groups import d4_subgroup
    >>> norm = GroupBatchNorm(3, d4_subgroup("C4"))
    >>> out = norm(torch.randn(5, 3, 4, 6, 6))
    >>> round(out[:, 1].mean().item(), 6), round(out[:, 1].var(unbiased=False).item(), 3)
    (0.0, 1.0)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bayesym.checks import is_positive_int
from bayesym.groups.finite import FiniteGroup
from bayesym.layers._checks import check_input_shape

__all__ = ["GroupBatchNorm"]


class GroupBatchNorm(nn.Module):
    """Batch norm of ``[N, C, |G|, H, W]``, statistics per base channel over the group axis.

    Args:
        num_channels: ``C`` (channels of the feature map).
        group: The group of the feature map's group axis (only its order is used).
        shared_copies: Number of consecutive channels sharing statistics (default 1);
            ``C`` must be a multiple of it. Base channel of channel ``c`` is
            ``c // shared_copies``.
        eps: Added to the variance.
        momentum: Running-statistics momentum (as ``torch.nn.BatchNorm``).
        affine: Learn ``weight`` and ``bias`` of shape ``[C]``.
        device: Parameter device.
        dtype: Parameter dtype.

    Attributes:
        running_mean: ``[C / shared_copies]`` buffer.
        running_var: ``[C / shared_copies]`` buffer.

    Raises:
        ValueError: Bad sizes; on call, wrong input shape (names the layer and shapes).
    """

    running_mean: Tensor
    running_var: Tensor
    num_batches_tracked: Tensor

    def __init__(
        self,
        num_channels: int,
        group: FiniteGroup,
        *,
        shared_copies: int = 1,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(group, FiniteGroup):
            raise TypeError(f"GroupBatchNorm: group must be a FiniteGroup, got {group!r}")
        for name, value in (("num_channels", num_channels), ("shared_copies", shared_copies)):
            if not is_positive_int(value):
                raise ValueError(
                    f"GroupBatchNorm({group.name}): {name} must be a positive int, got {value!r}"
                )
        if num_channels % shared_copies:
            raise ValueError(
                f"GroupBatchNorm({group.name}): num_channels {num_channels} is not a multiple "
                f"of shared_copies {shared_copies}"
            )
        self.group = group
        self.num_channels, self.shared_copies = num_channels, shared_copies
        self.eps, self.momentum = eps, momentum
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        base = num_channels // shared_copies
        self.register_buffer("running_mean", torch.zeros(base, **factory))
        self.register_buffer("running_var", torch.ones(base, **factory))
        self.register_buffer("num_batches_tracked", torch.tensor(0, device=device))
        if affine:
            self.weight = nn.Parameter(torch.ones(num_channels, **factory))
            self.bias = nn.Parameter(torch.zeros(num_channels, **factory))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: Tensor) -> Tensor:
        """``x: [N, C, |G|, H, W]`` -> same shape, normalised per base channel."""
        n = self.group.order
        check_input_shape(
            x, ("N", self.num_channels, n, "H", "W"), owner=f"GroupBatchNorm({self.group.name})"
        )
        if self.training:
            self.num_batches_tracked.add_(1)
        base = self.num_channels // self.shared_copies
        grouped = x.reshape(x.shape[0], base, self.shared_copies * n, *x.shape[-2:])
        normed = F.batch_norm(
            grouped,
            self.running_mean,
            self.running_var,
            training=self.training,
            momentum=self.momentum,
            eps=self.eps,
        ).reshape(x.shape)
        if self.weight is None:
            return normed
        shape = (1, self.num_channels, 1, 1, 1)
        return normed * self.weight.reshape(shape) + self.bias.reshape(shape)

    def extra_repr(self) -> str:
        """Constructor arguments, for ``repr``."""
        return (
            f"{self.num_channels}, group={self.group.name}, shared_copies={self.shared_copies}, "
            f"eps={self.eps}, momentum={self.momentum}, affine={self.weight is not None}"
        )
