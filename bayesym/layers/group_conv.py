"""Lifting and group convolutions over subgroups of D4, each ONE ``F.conv2d``.

Both layers keep their weight as a plain ``nn.Parameter`` and build the conv kernel by a
documented gather (:mod:`bayesym.groups.expansion`):

* :class:`LiftingConv2d` (EquiNAS Eq. 2): images ``x: [N, C_in, H, W]`` ->
  group feature maps ``[N, C_out, |G|, H, W]``; weight ``ψ: [C_out, C_in, k, k]``;
  ``out[:, d, g] = Σ_c x[:, c] ⋆ T_g ψ[d, c]``.
* :class:`GroupConv2d` (EquiNAS Eq. 1): ``[N, C_in, |G|, H, W] -> [N, C_out, |G|, H, W]``;
  weight ``ψ: [C_out, C_in, |G|, k, k]``;
  ``out[:, d, r] = Σ_{c, h} x[:, c, h] ⋆ T_r ψ[d, c, r^-1 h]``.

(``⋆`` is cross-correlation, ``T_g`` the image action of :mod:`bayesym.groups.actions`.)
For a later KFAC adapter: the layer is ``F.conv2d`` on ``x.reshape(N, C_in·|G|, H, W)``
with kernel ``expanded_kernel()``, which is ``weight`` gathered by ``expansion_index``
(flat index into ``weight[d, c]``; see :func:`~bayesym.groups.expansion.expand_group_kernel`),
i.e. one linear map with weight sharing over (group element, position).

Both are equivariant to every ``g ∈ G`` (regular action on outputs, image action on the
input of the lifting layer) and, with the default circular padding, to every cyclic shift.
Other padding modes (``"zeros"``, ``"reflect"``, ``"replicate"``) keep exact G-equivariance
on square grids but not shift equivariance. Kernel sizes must be odd. Padding and the
"same" convolution are shared with :mod:`bayesym.layers.conv` (``PaddingMode``).

Example:
    >>> import torch
    >>> from bayesym.groups import d4_subgroup
    >>> c4 = d4_subgroup("C4")
    >>> lift, gconv = LiftingConv2d(1, 2, 3, c4), GroupConv2d(2, 3, 3, c4)
    >>> gconv(lift(torch.randn(5, 1, 7, 7))).shape
    torch.Size([5, 3, 4, 7, 7])
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from bayesym.checks import check_positive_int
from bayesym.groups.d4 import dihedral4
from bayesym.groups.expansion import (
    expand_group_kernel,
    expand_lifting_kernel,
    group_conv_expansion_index,
    lifting_expansion_index,
)
from bayesym.groups.finite import FiniteGroup
from bayesym.layers._checks import check_input_shape
from bayesym.layers.conv import PaddingMode, check_padding_mode, same_conv2d
from bayesym.layers.symmetry import LayerSymmetry

__all__ = [
    "GroupConv2d",
    "GroupConvBase",
    "LiftingConv2d",
    "check_d4_subgroup",
    "check_group_conv_arguments",
]


def check_d4_subgroup(group: object, owner: str) -> FiniteGroup:
    """Return ``group`` if it is a subgroup of D4, else raise naming ``owner``."""
    if not isinstance(group, FiniteGroup):
        raise TypeError(f"{owner}: group must be a FiniteGroup, got {type(group).__name__}")
    if group.root is not dihedral4():
        raise ValueError(
            f"{owner}: group {group.name!r} must be a subgroup of D4 (root {group.root.name!r})"
        )
    return group


def check_group_conv_arguments(
    layer: str,
    group: object,
    kernel_size: int,
    padding_mode: str,
    in_channels: int,
    out_channels: int,
) -> FiniteGroup:
    """Check a group convolution's constructor arguments; returns the group.

    Raises:
        ValueError / TypeError: naming ``layer(group)`` and the bad argument.
    """
    owner = f"{layer}({getattr(group, 'name', group)})"
    checked = check_d4_subgroup(group, owner)
    check_positive_int(in_channels, name="in_channels", owner=owner)
    check_positive_int(out_channels, name="out_channels", owner=owner)
    check_positive_int(kernel_size, name="kernel_size", owner=owner)
    if kernel_size % 2 == 0:
        raise ValueError(f"{owner}: kernel_size must be odd (centred kernels), got {kernel_size}")
    check_padding_mode(padding_mode, owner=owner)
    return checked


def _on(index: Tensor, device: torch.device | str | None) -> Tensor:
    return index if device is None else index.to(device)


class GroupConvBase(nn.Module):
    """What the group convolutions share.

    Checked sizes and group, a weight, an optional bias shared over the group axis, the
    expansion index buffer, torch's default init, the symmetry and the bias expanded over the
    group axis. The defaults describe one filter bank applied per group element (lifting); a
    subclass with another weight overrides ``_weight_shape``, ``_fan_in`` and
    ``_expansion_index`` (arguments are documented on the concrete classes).
    """

    expansion_index: Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        group: FiniteGroup,
        *,
        padding_mode: PaddingMode = "circular",
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.group: FiniteGroup = check_group_conv_arguments(
            type(self).__name__, group, kernel_size, padding_mode, in_channels, out_channels
        )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.padding_mode = kernel_size, padding_mode
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(self._weight_shape(), **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.register_buffer(
            "expansion_index", _on(self._expansion_index(), device), persistent=False
        )
        self.reset_parameters()

    def _weight_shape(self) -> tuple[int, ...]:
        """Shape of ``weight`` (default: one filter bank ``[C_out, C_in, k, k]``)."""
        return (self.out_channels, self.in_channels, self.kernel_size, self.kernel_size)

    def _fan_in(self) -> int:
        """Inputs of one output unit (for the default init; default: one filter's)."""
        return self.in_channels * self.kernel_size**2

    def _expansion_index(self) -> Tensor:
        """The ``expansion_index`` buffer on the CPU (default: ``T_g`` of one filter bank)."""
        return lifting_expansion_index(self.group, self.kernel_size)

    @property
    def symmetry(self) -> LayerSymmetry:
        """The group ``G`` (by name), plus every cyclic shift with circular padding."""
        return LayerSymmetry(
            translations=self.padding_mode == "circular", point_group=self.group.name
        )

    def expanded_bias(self) -> Tensor | None:
        """``[C_out·|G|]``: the bias repeated over the group axis, or ``None``."""
        return None if self.bias is None else self.bias.repeat_interleave(self.group.order)

    def reset_parameters(self) -> None:
        """Uniform ``±1/sqrt(fan_in)`` init of weight and bias (torch's conv default)."""
        bound = 1.0 / math.sqrt(self._fan_in())
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        """Constructor arguments, for ``repr``."""
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"group={self.group.name}, padding_mode={self.padding_mode!r}, "
            f"bias={self.bias is not None}"
        )

    def _owner(self) -> str:
        return f"{type(self).__name__}({self.group.name})"

    def _check_input(self, x: Tensor, expected: tuple[int | None, ...]) -> None:
        """Raise unless ``x`` has the ``expected`` shape (``None``: any) and the weight's dtype."""
        check_input_shape(x, ["?" if e is None else e for e in expected], owner=self._owner())
        if x.dtype != self.weight.dtype:
            raise TypeError(
                f"{self._owner()}: input dtype {x.dtype} != weight dtype {self.weight.dtype}"
            )


class LiftingConv2d(GroupConvBase):
    """Lifting convolution ``[N, C_in, H, W] -> [N, C_out, |G|, H, W]`` (EquiNAS Eq. 2).

    Args:
        in_channels: ``C_in`` (image channels).
        out_channels: ``C_out`` (channels per group element).
        kernel_size: Odd ``k``.
        group: ``G <= D4`` (e.g. ``d4_subgroup("C4")``).
        padding_mode: See :data:`~bayesym.layers.conv.PaddingMode` (default ``"circular"``).
        bias: Learn one bias per output channel ``d``, shared over the group axis.
        device: Parameter device.
        dtype: Parameter dtype.

    Attributes:
        weight: ``ψ: [C_out, C_in, k, k]``.
        bias: ``[C_out]`` or ``None``.
        group: ``G``.
        expansion_index: ``[|G|, k, k]`` buffer, see :meth:`expanded_kernel`.

    Raises:
        ValueError / TypeError: Bad sizes, even kernel, unknown padding, non-D4 group; on
            call, wrong input shape or dtype (the message names the layer and shapes).
    """

    def expanded_kernel(self) -> Tensor:
        """``[C_out·|G|, C_in, k, k]``: row ``d·|G| + g`` is ``T_g ψ[d]``.

        ``out.flatten()[d, g, c, p] = weight[d, c].flatten()[expansion_index[g].flatten()[p]]``.
        """
        return expand_lifting_kernel(self.weight, self.group, self.expansion_index)

    def forward(self, x: Tensor) -> Tensor:
        """``x: [N, C_in, H, W]`` -> ``[N, C_out, |G|, H, W]``."""
        self._check_input(x, (None, self.in_channels, None, None))
        out = same_conv2d(x, self.expanded_kernel(), self.expanded_bias(), self.padding_mode)
        return out.unflatten(1, (self.out_channels, self.group.order))


class GroupConv2d(GroupConvBase):
    """Group convolution ``[N, C_in, |G|, H, W] -> [N, C_out, |G|, H, W]`` (EquiNAS Eq. 1).

    Args:
        in_channels: ``C_in`` (channels per group element).
        out_channels: ``C_out``.
        kernel_size: Odd ``k``.
        group: ``G <= D4``.
        padding_mode: See :data:`~bayesym.layers.conv.PaddingMode` (default ``"circular"``).
        bias: Learn one bias per output channel ``d``, shared over the group axis.
        device: Parameter device.
        dtype: Parameter dtype.

    Attributes:
        weight: ``ψ: [C_out, C_in, |G|, k, k]``; ``ψ[d, c, u]`` is the filter for the
            relative element ``u = r^-1 h``.
        bias: ``[C_out]`` or ``None``.
        group: ``G``.
        expansion_index: ``[|G|, |G|, k, k]`` buffer, see :meth:`expanded_kernel`.

    Raises:
        ValueError / TypeError: As :class:`LiftingConv2d`.
    """

    def _weight_shape(self) -> tuple[int, ...]:
        n, k = self.group.order, self.kernel_size
        return (self.out_channels, self.in_channels, n, k, k)

    def _fan_in(self) -> int:
        return self.in_channels * self.group.order * self.kernel_size**2

    def _expansion_index(self) -> Tensor:
        return group_conv_expansion_index(self.group, self.kernel_size)

    def expanded_kernel(self) -> Tensor:
        """``[C_out·|G|, C_in·|G|, k, k]``, block ``(d·|G|+r, c·|G|+h)`` = ``T_r ψ[d, c, r^-1 h]``.

        As a gather, with ``weight[d, c]`` flattened over ``(u, i, j)``:
        ``out[d, r, c, h].flatten()[p] = weight[d, c].flatten()[M[r, h].flatten()[p]]``,
        ``M = expansion_index``.
        """
        return expand_group_kernel(self.weight, self.group, self.expansion_index)

    def forward(self, x: Tensor) -> Tensor:
        """``x: [N, C_in, |G|, H, W]`` -> ``[N, C_out, |G|, H, W]``."""
        n = self.group.order
        self._check_input(x, (None, self.in_channels, n, None, None))
        flat = x.flatten(1, 2)
        out = same_conv2d(flat, self.expanded_kernel(), self.expanded_bias(), self.padding_mode)
        return out.unflatten(1, (self.out_channels, n))
