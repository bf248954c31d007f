"""[G]-mixed equivariant layers (EquiNAS Sec. 4.2, Eq. 10-11).

A [G]-mixed layer holds one kernel per component group ``K`` of a list ``[G]`` (all
subgroups of a *layout group* ``G``, by default the six named subgroups of D4) and computes
ONE convolution with the softmax-weighted sum of their expanded kernels:

    ``out = x ⋆ Σ_K z_K · E_K(ψ^K)``,   ``z = softmax(α)``   (Eq. 11),

where ``E_K`` expands the K-kernel (:mod:`bayesym.groups.expansion`) and reorders it into the
channel layout of ``G``. Feature maps are always ``G``-feature maps ``[N, C, |G|, H, W]``.

**Channel layout of a component.** A K-layer works on K-feature maps with ``[G:K]`` times
the channels; it is placed in the G-layout by re-reading (:mod:`bayesym.groups.restriction`):
K-channel ``(c, s)`` at ``k ∈ K`` is G-channel ``c`` at ``g = k·s`` (``s`` a right-coset
representative of ``K`` in ``G``). So the K-component in G-layout equals
``expand ∘ L_K ∘ restrict``: it is exactly K-equivariant for the G-regular action restricted
to ``K``, and mixing components ``K ⊇ H`` gives an H-equivariant layer. (Mixing kernels
without this reordering — the reference code's bug — breaks equivariance.)

**Sizes.** For ``C_in -> C_out`` G-channels, the K-kernel of a group convolution is
``ψ^K: [C_out·[G:K], C_in·[G:K], |K|, k, k]`` (``[G:K]`` times the parameters of the
G-kernel, EquiNAS Sec. 6); of a lifting convolution ``ψ^K: [C_out·[G:K], C_in, k, k]``.
Every component expands to the same ``[C_out·|G|, C_in·|G|, k, k]`` kernel.

**Weight normalisation** (Salimans & Kingma 2016, as EquiNAS_D): ``ψ^K[d] = n^K[d] ·
v^K[d] / ||v^K[d]||_F`` per output channel ``d`` of the component, with the direction
``v^K`` learned (``directions[K]``) and the norm ``n^K`` a buffer fixed at initialisation
(``= ||v^K[d]||_F`` at init), so the norm cannot confound the architecture weights.

The architecture logits ``α`` are the parameter named :data:`ARCHITECTURE_PARAMETER_NAME`;
:func:`architecture_parameters` and :func:`weight_parameters` split a model's parameters for
the two optimisers of EquiNAS_D.

Example:
    >>> import torch
    >>> from bayesym.groups import d4_subgroup
    >>> layer = MixedGroupConv2d(2, 3, 3, d4_subgroup("D4"))
    >>> [g.name for g in layer.components], layer(torch.randn(1, 2, 8, 5, 5)).shape
    (['C1', 'C2', 'C4', 'D1', 'D2', 'D4'], torch.Size([1, 3, 8, 5, 5]))
    >>> [name for name, _ in layer.named_parameters()][:2]
    ['architecture_logits', 'bias']
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from bayesym.groups.d4 import d4_subgroups
from bayesym.groups.expansion import (
    expand_group_kernel,
    expand_lifting_kernel,
    group_conv_expansion_index,
    lifting_expansion_index,
)
from bayesym.groups.finite import FiniteGroup, coset_index, is_subgroup
from bayesym.groups.restriction import restriction_index
from bayesym.layers._checks import check_input_shape
from bayesym.layers.conv import PaddingMode, same_conv2d
from bayesym.layers.group_conv import check_d4_subgroup, check_group_conv_arguments
from bayesym.layers.symmetry import LayerSymmetry

__all__ = [
    "ARCHITECTURE_PARAMETER_NAME",
    "MixedGroupConv2d",
    "MixedLiftingConv2d",
    "architecture_parameters",
    "weight_parameters",
]

ARCHITECTURE_PARAMETER_NAME = "architecture_logits"
"""Attribute name of the architecture logits ``α`` in every mixed layer."""


def architecture_parameters(module: nn.Module) -> Iterator[nn.Parameter]:
    """All architecture logits ``α`` of the mixed layers inside ``module``."""
    for name, parameter in module.named_parameters():
        if name.rsplit(".", 1)[-1] == ARCHITECTURE_PARAMETER_NAME:
            yield parameter


def weight_parameters(module: nn.Module) -> Iterator[nn.Parameter]:
    """All parameters of ``module`` except the architecture logits."""
    for name, parameter in module.named_parameters():
        if name.rsplit(".", 1)[-1] != ARCHITECTURE_PARAMETER_NAME:
            yield parameter


def _layout_permutation(group: FiniteGroup, component: FiniteGroup) -> Tensor:
    """``perm[g]`` = position ``s·|K| + i`` of G-element ``g = k_i·s_j`` in the K-layout block."""
    return torch.argsort(restriction_index(group, component).flatten())


class _MixedConv(nn.Module, ABC):
    """Shared machinery of the mixed lifting / group convolutions (arguments: see those)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        group: FiniteGroup,
        *,
        components: Sequence[FiniteGroup] | None = None,
        padding_mode: PaddingMode = "circular",
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        owner = f"{type(self).__name__}({getattr(group, 'name', group)})"
        self.group: FiniteGroup = check_group_conv_arguments(
            type(self).__name__, group, kernel_size, padding_mode, in_channels, out_channels
        )
        if components is None:
            components = [k for k in d4_subgroups() if is_subgroup(k, self.group)]
        components = tuple(check_d4_subgroup(k, owner) for k in components)
        if not components:
            raise ValueError(f"{owner}: needs at least one component group")
        names = [k.name for k in components]
        if len(set(names)) != len(names):
            raise ValueError(f"{owner}: component names must be unique, got {names}")
        for k in components:
            if not is_subgroup(k, self.group):
                raise ValueError(
                    f"{owner}: component {k.name!r} is not a subgroup of the layout group "
                    f"{self.group.name!r}"
                )
        self.components: tuple[FiniteGroup, ...] = components
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.padding_mode = kernel_size, padding_mode
        self.architecture_logits = nn.Parameter(
            torch.zeros(len(components), device=device, dtype=dtype)
        )
        self.bias = (
            nn.Parameter(torch.zeros(out_channels, device=device, dtype=dtype)) if bias else None
        )
        self.directions = nn.ParameterDict()
        for k in components:
            shape = self._component_shape(k)
            self.directions[k.name] = nn.Parameter(torch.empty(shape, device=device, dtype=dtype))
            self.register_buffer(f"norm_{k.name}", torch.ones(shape[0], device=device, dtype=dtype))
            index = self._expansion_index(k)
            perm = _layout_permutation(self.group, k)
            if device is not None:
                index, perm = index.to(device), perm.to(device)
            self.register_buffer(f"expansion_index_{k.name}", index, persistent=False)
            self.register_buffer(f"layout_permutation_{k.name}", perm, persistent=False)
        self.reset_parameters()

    # --- subclass hooks ----------------------------------------------------------------------
    @abstractmethod
    def _component_shape(self, component: FiniteGroup) -> tuple[int, ...]:
        """Shape of the direction ``v^K``."""

    @abstractmethod
    def _expansion_index(self, component: FiniteGroup) -> Tensor:
        """Gather index expanding ``ψ^K`` (see :mod:`bayesym.groups.expansion`)."""

    @abstractmethod
    def _fan_in(self) -> int:
        """Fan-in of the expanded kernel (same for every component)."""

    @abstractmethod
    def _expand_component(self, kernel: Tensor, component: FiniteGroup) -> Tensor:
        """Expanded kernel of one component, reordered into the G-layout."""

    def _index_maps(self, component: FiniteGroup) -> tuple[Tensor, Tensor]:
        """The component's expansion index and its G-layout permutation (buffers)."""
        return (
            self.get_buffer(f"expansion_index_{component.name}"),
            self.get_buffer(f"layout_permutation_{component.name}"),
        )

    # --- parameters ------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """Directions ``U(±1/sqrt(fan_in))`` (fan-in of the expanded kernel); norms fixed to them.

        Architecture logits are zeroed (uniform mixture), the bias too.
        """
        bound = 1.0 / math.sqrt(self._fan_in())
        with torch.no_grad():
            for k in self.components:
                direction = self.directions[k.name]
                nn.init.uniform_(direction, -bound, bound)
                self.component_norm(k.name).copy_(direction.flatten(1).norm(dim=1))
            self.architecture_logits.zero_()
            if self.bias is not None:
                self.bias.zero_()

    def architecture_weights(self) -> Tensor:
        """``z = softmax(α)``: ``[num_components]``, in the order of :attr:`components`."""
        return torch.softmax(self.architecture_logits, dim=0)

    def component(self, name: str) -> FiniteGroup:
        """The component group called ``name``.

        Raises:
            KeyError: naming the layer's components if there is none called ``name``.
        """
        for k in self.components:
            if k.name == name:
                return k
        raise KeyError(
            f"{self._owner()}: no component {name!r}; components: "
            f"{', '.join(k.name for k in self.components)}"
        )

    def component_norm(self, name: str) -> Tensor:
        """The fixed norms ``n^K``: ``[rows of v^K]``, one per output channel of the component.

        The buffer itself (stored in the state dict as ``norm_<name>``), not a copy.
        """
        return self.get_buffer(f"norm_{self.component(name).name}")

    def component_kernel(self, name: str) -> Tensor:
        """Weight-normalised kernel ``ψ^K`` of the component called ``name``."""
        self.component(name)  # a clear error for an unknown name
        direction = self.directions[name]
        norm = self.component_norm(name)
        scale = norm / direction.flatten(1).norm(dim=1)
        return direction * scale.reshape(-1, *([1] * (direction.dim() - 1)))

    def expand_component(self, kernel: Tensor, name: str) -> Tensor:
        """Expand ``kernel`` (shaped like ``v^K``) as component ``name``, into the G-layout.

        The same linear map :meth:`expanded_component` applies to ``ψ^K``; the curvature
        adapters probe it with other kernels.
        """
        return self._expand_component(kernel, self.component(name))

    def expanded_component(self, name: str) -> Tensor:
        """The component's expanded kernel in the G-layout (not yet weighted by ``z``)."""
        return self.expand_component(self.component_kernel(name), name)

    def expanded_kernel(self) -> Tensor:
        """``Σ_K z_K · E_K(ψ^K)``: the one conv kernel of the layer (Eq. 11)."""
        weights = self.architecture_weights()
        first, *others = self.components  # the constructor requires one at least
        kernel = weights[0] * self.expanded_component(first.name)
        for i, k in enumerate(others, start=1):
            kernel = kernel + weights[i] * self.expanded_component(k.name)
        return kernel

    def expanded_bias(self) -> Tensor | None:
        """``[C_out·|G|]``: the bias repeated over the group axis, or ``None``."""
        return None if self.bias is None else self.bias.repeat_interleave(self.group.order)

    @property
    def symmetry(self) -> LayerSymmetry:
        """Equivariance guaranteed for any ``α``: the intersection of all components."""
        common = set(self.components[0].root_embedding)
        for k in self.components[1:]:
            common &= set(k.root_embedding)
        name = next(
            (
                g.name
                for g in (*self.components, *d4_subgroups())
                if set(g.root_embedding) == common
            ),
            None,
        )
        return LayerSymmetry(translations=self.padding_mode == "circular", point_group=name)

    def _owner(self) -> str:
        return f"{type(self).__name__}({self.group.name})"

    def restrict(self, components: Sequence[str | FiniteGroup]) -> _MixedConv:
        """A new layer of the same type with only the named components (weights copied).

        The kept architecture logits are copied, so the kept ``z`` are renormalised by the
        softmax. With all kept components ``⊇ H`` the result is exactly H-equivariant.
        """
        names = [k if isinstance(k, str) else k.name for k in components]
        known = [k.name for k in self.components]
        for name in names:
            if name not in known:
                raise KeyError(f"{self._owner()}: no component {name!r}; components: {known}")
        kept = [self.components[known.index(n)] for n in names]
        new = type(self)(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.group,
            components=kept,
            padding_mode=self.padding_mode,
            bias=self.bias is not None,
            device=self.architecture_logits.device,
            dtype=self.architecture_logits.dtype,
        )
        with torch.no_grad():
            for i, name in enumerate(names):
                new.directions[name].copy_(self.directions[name])
                new.component_norm(name).copy_(self.component_norm(name))
                new.architecture_logits[i] = self.architecture_logits[known.index(name)]
            if self.bias is not None and new.bias is not None:
                new.bias.copy_(self.bias)
        return new

    def extra_repr(self) -> str:
        """Constructor arguments, for ``repr``."""
        names = ", ".join(k.name for k in self.components)
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"group={self.group.name}, components=[{names}], "
            f"padding_mode={self.padding_mode!r}, bias={self.bias is not None}"
        )


class MixedLiftingConv2d(_MixedConv):
    """[G]-mixed lifting convolution ``[N, C_in, H, W] -> [N, C_out, |G|, H, W]``.

    Args:
        in_channels: ``C_in`` image channels.
        out_channels: ``C_out`` G-channels.
        kernel_size: Odd ``k``.
        group: Layout group ``G <= D4``.
        components: Component groups, each ``<= G`` (default: the named D4 subgroups
            ``<= G``, in the order C1, C2, C4, D1, D2, D4).
        padding_mode: See :data:`~bayesym.layers.conv.PaddingMode`.
        bias: One bias per G-channel, shared over the group axis.
        device: Parameter device.
        dtype: Parameter dtype.

    Attributes:
        architecture_logits: ``α: [num_components]``.
        directions: ``nn.ParameterDict`` name -> ``v^K: [C_out·[G:K], C_in, k, k]``.
        components: The component groups.
    """

    def _component_shape(self, component: FiniteGroup) -> tuple[int, ...]:
        copies = coset_index(self.group, component)
        k = self.kernel_size
        return (self.out_channels * copies, self.in_channels, k, k)

    def _expansion_index(self, component: FiniteGroup) -> Tensor:
        return lifting_expansion_index(component, self.kernel_size)

    def _fan_in(self) -> int:
        return self.in_channels * self.kernel_size**2

    def _expand_component(self, kernel: Tensor, component: FiniteGroup) -> Tensor:
        index, perm = self._index_maps(component)
        expanded = expand_lifting_kernel(kernel, component, index)  # rows ((d, s), k)
        n, k = self.group.order, self.kernel_size
        blocks = expanded.reshape(self.out_channels, n, self.in_channels, k, k)
        return blocks[:, perm].reshape(self.out_channels * n, self.in_channels, k, k)

    def forward(self, x: Tensor) -> Tensor:
        """``x: [N, C_in, H, W]`` -> ``[N, C_out, |G|, H, W]``."""
        check_input_shape(x, ("N", self.in_channels, "H", "W"), owner=self._owner())
        out = same_conv2d(x, self.expanded_kernel(), self.expanded_bias(), self.padding_mode)
        return out.unflatten(1, (self.out_channels, self.group.order))


class MixedGroupConv2d(_MixedConv):
    """[G]-mixed group convolution ``[N, C_in, |G|, H, W] -> [N, C_out, |G|, H, W]``.

    Args:
        in_channels: ``C_in`` G-channels.
        out_channels: ``C_out`` G-channels.
        kernel_size: Odd ``k``.
        group: Layout group ``G <= D4``.
        components: Component groups, each ``<= G`` (default: the named D4 subgroups
            ``<= G``).
        padding_mode: See :data:`~bayesym.layers.conv.PaddingMode`.
        bias: One bias per G-channel, shared over the group axis.
        device: Parameter device.
        dtype: Parameter dtype.

    Attributes:
        architecture_logits: ``α: [num_components]``.
        directions: name -> ``v^K: [C_out·[G:K], C_in·[G:K], |K|, k, k]``.
        components: The component groups.
    """

    def _component_shape(self, component: FiniteGroup) -> tuple[int, ...]:
        copies = coset_index(self.group, component)
        k = self.kernel_size
        return (self.out_channels * copies, self.in_channels * copies, component.order, k, k)

    def _expansion_index(self, component: FiniteGroup) -> Tensor:
        return group_conv_expansion_index(component, self.kernel_size)

    def _fan_in(self) -> int:
        return self.in_channels * self.group.order * self.kernel_size**2

    def _expand_component(self, kernel: Tensor, component: FiniteGroup) -> Tensor:
        index, perm = self._index_maps(component)
        expanded = expand_group_kernel(kernel, component, index)  # [((d,s),k), ((c,s'),k')]
        n, k = self.group.order, self.kernel_size
        blocks = expanded.reshape(self.out_channels, n, self.in_channels, n, k, k)
        blocks = blocks[:, perm][:, :, :, perm]
        return blocks.reshape(self.out_channels * n, self.in_channels * n, k, k)

    def forward(self, x: Tensor) -> Tensor:
        """``x: [N, C_in, |G|, H, W]`` -> ``[N, C_out, |G|, H, W]``."""
        n = self.group.order
        check_input_shape(x, ("N", self.in_channels, n, "H", "W"), owner=self._owner())
        flat = x.flatten(1, 2)
        out = same_conv2d(flat, self.expanded_kernel(), self.expanded_bias(), self.padding_mode)
        return out.unflatten(1, (self.out_channels, n))
