r"""KFAC adapters of the convolutions of the layer zoo (CONV, S-CONV, lifting, GCONV, mixed).

All of them are ``same_conv2d(pad(x), W)`` with a kernel gathered from a parameter
(:mod:`bayesym.adapters.gathered`): patches are built with the layer's own padding
(:func:`bayesym.layers.conv.pad_same`), the structure is probed from the layer's own expansion.
Blocks per layer:

* the kernel parameter: ``B ⊗ A`` (``[out, in]`` order), for anchor-point convolutions with
  ``A_u = (I ⊗ Φ) A (I ⊗ Φ)ᵀ`` (App. C.2), for weight-normalised mixed components with the
  output factor scaled by ``z_K² · norm_r / ‖v_r‖`` per row (exact up to the radial projection
  ``I - u uᵀ`` of weight normalisation, along which the function is flat);
* the bias ``[C_out]`` (shared over group axis and positions): a dense output factor;
* small non-linear parameters (RBF ``omega`` and anchor locations, mixture logits ``α``): exact
  dense blocks from their output tangents ``∂y/∂θ_k``: forward-mode AD
  (:func:`curvature.parameter_tangents`, one forward per scalar) for the RBF parameters, a
  closed form from one stacked convolution for the mixture logits
  (:func:`mixture_logit_tangents`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar, cast

import torch
from torch import Tensor, nn

from bayesym.adapters.gathered import (
    GatherStructure,
    SamePatches,
    cached_structure,
    gather_structure,
    same_patches,
)
from bayesym.layers.conv import PaddingMode, SpatialConv2d, same_conv2d
from bayesym.layers.group_conv import GroupConv2d, LiftingConv2d
from bayesym.layers.mixed import ARCHITECTURE_PARAMETER_NAME, MixedGroupConv2d, MixedLiftingConv2d
from bayesym.layers.sparse import SparseConv2d
from curvature import BlockSpec, ForwardResult, InputStatistic, ModuleAdapter
from curvature.adapters import (
    Approx,
    DenseFactor,
    StatisticsRequest,
    bias_blocks,
    covariance,
    if_bias,
    parameter_tangents,
    tangent_ggn,
)

__all__ = [
    "GatheredConvAdapter",
    "GroupConvAdapter",
    "MixedConvAdapter",
    "SparseConvAdapter",
    "SpatialConvAdapter",
    "learnable_basis_parameters",
    "mixture_logit_tangents",
    "tangent_blocks",
    "tangent_specs",
    "tangents_of",
]


def _bias_statistic(grads: Tensor, approx: Approx) -> Tensor:
    """``Σ g gᵀ`` for a bias shared over everything but dim 2: ``grads: [S, N, C, ...]``."""
    s, n, c = grads.shape[:3]
    g = grads.reshape(s, n, c, -1)
    rows = g.movedim(2, -1).reshape(-1, c) if approx == "expand" else g.sum(-1).reshape(-1, c)
    return covariance(rows)


def learnable_basis_parameters(module: nn.Module) -> list[str]:
    """Dotted names of the trainable parameters of a module's RBF bases (``basis*.omega`` ...)."""
    return [
        name
        for name, p in module.named_parameters()
        if "." in name and name.split(".")[0].startswith("basis") and p.requires_grad
    ]


def tangent_specs(module: nn.Module, names: list[str]) -> list[BlockSpec]:
    """One exact dense block per small parameter (so each can sit in its own prior group)."""
    return [BlockSpec.dense_parameter(module, n) for n in names]


Tangents = tuple[list[str], Tensor | None]
"""Names of the active small parameters and their joint tangents ``[N, K, ...]``."""


def tangents_of(
    module: nn.Module,
    inputs: tuple[Any, ...],
    names: list[str],
    request: StatisticsRequest,
    tangents: Callable[[nn.Module, tuple[Any, ...], list[str]], Tensor] = parameter_tangents,
) -> Tangents:
    """Tangents of the small parameters among ``names`` whose blocks the ``request`` keeps.

    ``tangents(module, inputs, kept)`` computes them: forward-mode AD by default
    (:func:`curvature.parameter_tangents`), or a closed form such as
    :func:`mixture_logit_tangents`. The blocks of the others are excluded from the curvature:
    their tangents are not computed.
    """
    kept = [n for n in names if request.keeps(n)]
    return kept, (tangents(module, inputs, kept) if kept else None)


def tangent_blocks(
    module: nn.Module, names: list[str], tangents: Tangents, output_grads: Tensor
) -> list[Tensor]:
    """The exact dense blocks of :func:`tangent_specs` (zeros for excluded parameters)."""
    active, values = tangents
    out, offset = [], 0
    for n in names:
        k = module.get_parameter(n).numel()
        if n in active and values is not None:  # values: the active ones' tangents
            out.append(tangent_ggn(values[:, offset : offset + k], output_grads))
            offset += k
        else:  # excluded: the engine discards this block
            out.append(output_grads.new_zeros(k, k))
    return out


class SameConv(Protocol):
    """What the gathered-conv adapters read of a layer: a stride-1 'same' convolution."""

    @property
    def kernel_size(self) -> int:
        """Odd kernel side ``k``."""
        ...

    @property
    def padding_mode(self) -> PaddingMode:
        """How the input is padded (as :func:`~bayesym.layers.conv.same_conv2d` pads)."""
        ...

    @property
    def bias(self) -> Tensor | None:
        """The bias ``[C_out]`` (shared over group axis and positions), or ``None``."""
        ...


Layer = TypeVar("Layer", bound=SameConv)

MixedConv = MixedLiftingConv2d | MixedGroupConv2d
"""The [G]-mixed convolutions."""


class GatheredConvAdapter(ModuleAdapter, Generic[Layer]):
    """Shared logic: kernel block, optional dense tangent block, bias block.

    A subclass serves the layer type ``Layer`` (the registry maps only those to it).
    """

    kernel_name: str = "weight"

    # --- what subclasses describe ---------------------------------------------------------
    def structure(self, layer: Layer) -> GatherStructure:
        """The kernel's gather structure (probed from the layer's expansion)."""
        raise NotImplementedError

    def patches(self, layer: Layer, x: Tensor) -> SamePatches:
        """The patches of the layer's input (a group axis is merged into the channels)."""
        return same_patches(x, layer.kernel_size, layer.padding_mode)

    def input_factor(self, layer: Layer, a_sum: Tensor) -> Tensor:
        """Map the kernel's input factor to the parameter's (identity unless projected)."""
        return a_sum

    def tangent_names(self, module: nn.Module) -> list[str]:
        """Small parameters with exact dense blocks from tangents."""
        return []

    # --- ModuleAdapter ---------------------------------------------------------------------
    def _kernel_spec(self, module: nn.Module) -> BlockSpec:
        rows = module.get_parameter(self.kernel_name).shape[0]
        return BlockSpec.kronecker_parameter(module, self.kernel_name, rows)

    def blocks(self, module: nn.Module) -> tuple[BlockSpec, ...]:
        """Kernel (Kronecker), tangent parameters (dense) and bias (dense) blocks."""
        return (
            self._kernel_spec(module),
            *tangent_specs(module, self.tangent_names(module)),
            *bias_blocks(module),
        )

    def forward_statistics(
        self, module: nn.Module, inputs: tuple[Any, ...], output: Tensor, request: StatisticsRequest
    ) -> ForwardResult:
        """Permuted patch covariance of the kernel; tangents of the small parameters."""
        layer = cast(Layer, module)
        structure = self.structure(layer)
        a_sum, count = structure.input_statistic(self.patches(layer, inputs[0]), request.approx)
        stats: list[InputStatistic | None] = [
            InputStatistic(DenseFactor(self.input_factor(layer, a_sum)), count)
        ]
        names = self.tangent_names(module)
        tangents = tangents_of(module, inputs, names, request)
        stats.extend([None] * len(names))
        return ForwardResult((*stats, *if_bias(module, None)), state=(structure, tangents))

    def backward_statistics(
        self, module: nn.Module, state: Any, output_grads: Tensor, request: StatisticsRequest
    ) -> tuple[Tensor, ...]:
        """Output factor of the kernel, exact tangent block, bias factor."""
        structure, tangents = state
        s, n = output_grads.shape[:2]
        rows_exp = structure.copy_rows.numel()
        flat = output_grads.reshape(s, n, rows_exp, -1)
        out = [structure.output_statistic(flat, request.approx)]
        out.extend(tangent_blocks(module, self.tangent_names(module), tangents, output_grads))
        if cast(Layer, module).bias is not None:
            out.append(_bias_statistic(output_grads, request.approx))
        return tuple(out)


def _identity_structure(param: Tensor) -> GatherStructure:
    rows, width = param.shape[0], param[0].numel()
    return GatherStructure(inverse=torch.arange(width)[None], copy_rows=torch.arange(rows)[:, None])


class SpatialConvAdapter(GatheredConvAdapter[SpatialConv2d]):
    """CONV (:class:`~bayesym.layers.conv.SpatialConv2d`): plain conv, its own padding."""

    def structure(self, layer: SpatialConv2d) -> GatherStructure:
        """One copy per row (no group)."""
        return _identity_structure(layer.weight)


class SparseConvAdapter(GatheredConvAdapter[SparseConv2d]):
    """S-CONV: ``A_u = (I ⊗ Φ) A (I ⊗ Φ)ᵀ`` for anchor values ``u [C_out, C_in, M]``."""

    kernel_name = "anchor_values"

    def structure(self, layer: SparseConv2d) -> GatherStructure:
        """One copy per row; the basis projection is applied to the input factor."""
        c_out = layer.out_channels
        return GatherStructure(
            inverse=torch.arange(layer.in_channels * layer.kernel_size**2)[None],
            copy_rows=torch.arange(c_out)[:, None],
        )

    def input_factor(self, layer: SparseConv2d, a_sum: Tensor) -> Tensor:
        """Project the filter-space factor onto the anchor values."""
        psi = layer.basis.matrix().detach().to(a_sum)  # [M, k²]
        c, k2 = layer.in_channels, layer.kernel_size**2
        a4 = a_sum.reshape(c, k2, c, k2)
        return torch.einsum("ipjq,mp,nq->imjn", a4, psi, psi).reshape(c * psi.shape[0], -1)

    def tangent_names(self, module: nn.Module) -> list[str]:
        """Learnable ``basis.omega`` / ``basis.anchor_locations``."""
        return learnable_basis_parameters(module)


class GroupConvAdapter(GatheredConvAdapter[LiftingConv2d | GroupConv2d]):
    """Lifting and group convolutions: weight sharing over (group element, position)."""

    def structure(self, layer: LiftingConv2d | GroupConv2d) -> GatherStructure:
        """Probe :meth:`expanded_kernel`'s index map with an ``arange`` weight."""
        from bayesym.groups.expansion import expand_group_kernel, expand_lifting_kernel

        expand = expand_lifting_kernel if isinstance(layer, LiftingConv2d) else expand_group_kernel
        index = layer.get_buffer("expansion_index")
        key = (type(layer).__name__, layer.group.name, tuple(layer.weight.shape))
        return cached_structure(
            key,
            lambda: gather_structure(
                lambda w: expand(w, layer.group, index.cpu()),
                layer.weight.shape,
                type(layer).__name__,
            ),
        )


@torch.no_grad()
def mixture_logit_tangents(module: MixedConv, x: Tensor) -> Tensor:
    r"""``∂y/∂α_j`` of a [G]-mixed convolution for every logit, from one stacked convolution.

    With ``y = x ⋆ Σ_K z_K E_K + b``, ``z = softmax(α)`` and ``∂z_K/∂α_j = z_K (δ_{Kj} - z_j)``:

    .. math::
        \frac{\partial y}{\partial α_j} = \sum_K z_K (δ_{Kj} - z_j)\, Y_K
        = z_j \Big(Y_j - \sum_K z_K Y_K\Big), \qquad Y_K = x ⋆ E_K,

    and all ``Y_K`` come from one convolution with the expanded component kernels stacked
    along the output channels (the same multiply-adds as ``K`` separate ones; forward-mode AD
    would run the layer once per logit).

    Args:
        module: a :class:`~bayesym.layers.MixedLiftingConv2d` or
            :class:`~bayesym.layers.MixedGroupConv2d`.
        x: its input, ``[N, C_in, H, W]`` or ``[N, C_in, |G|, H, W]``.

    Returns:
        ``[N, K, C_out, |G|, H, W]`` (``K`` components, in the order of ``module.components``).
    """
    flat = x.flatten(1, 2) if x.dim() == 5 else x
    kernels = torch.cat([module.expanded_component(k.name) for k in module.components])
    n, k = flat.shape[0], len(module.components)
    outputs = same_conv2d(flat, kernels, None, module.padding_mode)
    outputs = outputs.view(n, k, module.out_channels, module.group.order, *outputs.shape[-2:])
    z = module.architecture_weights().view(1, k, 1, 1, 1, 1)
    return z * (outputs - (z * outputs).sum(1, keepdim=True))


class MixedConvAdapter(ModuleAdapter):
    """[G]-mixed convolutions: one Kronecker block per component direction ``v^K``.

    The layer's kernel is ``Σ_K z_K E_K(c ⊙ v^K / ‖v^K‖)``; each component's direction gets
    the gathered-conv factors of its own expansion ``E_K``, with the output factor scaled by
    ``(z_K c_r / ‖v^K_r‖)²`` per row. The architecture logits ``α`` (excluded by EquiNAS_D,
    which learns them on validation data) get an exact dense block.
    """

    def blocks(self, module: nn.Module) -> tuple[BlockSpec, ...]:
        """``directions.<K>`` for every component, ``architecture_logits`` and ``bias``."""
        layer = cast(MixedConv, module)
        specs = []
        for k in layer.components:
            rows = layer.directions[k.name].shape[0]
            specs.append(BlockSpec.kronecker_parameter(module, f"directions.{k.name}", rows))
        specs.append(BlockSpec.dense_parameter(module, ARCHITECTURE_PARAMETER_NAME))
        return (*specs, *bias_blocks(module))

    @staticmethod
    def _structure(layer: MixedConv, name: str) -> GatherStructure:
        shape = layer.directions[name].shape

        def expand(w: Tensor) -> Tensor:
            with torch.no_grad():
                return layer.expand_component(w.to(layer.directions[name].device), name).cpu()

        key = (type(layer).__name__, layer.group.name, name, tuple(shape))
        return cached_structure(
            key,
            lambda: gather_structure(expand, shape, f"{type(layer).__name__} component {name}"),
        )

    def forward_statistics(
        self, module: nn.Module, inputs: tuple[Any, ...], output: Tensor, request: StatisticsRequest
    ) -> ForwardResult:
        """Per-component permuted patch covariances and the logits' tangents."""
        layer = cast(MixedConv, module)
        patches = same_patches(inputs[0], layer.kernel_size, layer.padding_mode)
        structures = {}
        stats: list[InputStatistic | None] = []
        for k in layer.components:
            structures[k.name] = self._structure(layer, k.name)
            a_sum, count = structures[k.name].input_statistic(patches, request.approx)
            stats.append(InputStatistic(DenseFactor(a_sum), count))
        tangents = tangents_of(
            module,
            inputs,
            [ARCHITECTURE_PARAMETER_NAME],
            request,
            lambda _module, _inputs, _names: mixture_logit_tangents(layer, inputs[0]),
        )
        stats.append(None)
        return ForwardResult((*stats, *if_bias(module, None)), state=(structures, tangents))

    def backward_statistics(
        self, module: nn.Module, state: Any, output_grads: Tensor, request: StatisticsRequest
    ) -> tuple[Tensor, ...]:
        """Scaled per-component output factors, the logits' block, the bias factor."""
        layer = cast(MixedConv, module)
        structures, tangents = state
        s, n = output_grads.shape[:2]
        z = layer.architecture_weights().detach()
        out = []
        for i, k in enumerate(layer.components):
            structure = structures[k.name]
            flat = output_grads.reshape(s, n, structure.copy_rows.numel(), -1)
            b = structure.output_statistic(flat, request.approx)
            direction = layer.directions[k.name].detach()
            norm = layer.component_norm(k.name)
            scale = z[i] * norm / direction.flatten(1).norm(dim=1)
            out.append(b * scale[:, None] * scale[None, :])
        out.extend(tangent_blocks(module, [ARCHITECTURE_PARAMETER_NAME], tangents, output_grads))
        if layer.bias is not None:
            out.append(_bias_statistic(output_grads, request.approx))
        return tuple(out)
