r"""KFAC adapters of layers whose own parameters are a few scalars per channel.

* :class:`~bayesym.layers.homotopic.HomotopicLayer` ``y = f_eq(x) + γ f_neq(x)``: the paths are
  submodules with their own adapters (their output gradients already carry ``γ``); ``γ`` gets its
  exact GGN block ``Σ_{s,n} (Σ_d g_d h_d)²`` with ``h = f_neq(x)``.
* :class:`~bayesym.layers.group_norm.GroupBatchNorm` in eval mode, ``y = w ⊙ x̂ + b``: exact dense
  blocks ``Σ (Σ g x̂)(…)ᵀ`` for ``w`` and ``Σ (Σ g)(…)ᵀ`` for ``b`` per channel. In train mode
  the batch statistics couple the data, so the curvature is refused (put the model in eval
  mode; the marglik trainer does).
"""

from __future__ import annotations

from typing import Any, cast

import torch.nn.functional as F
from torch import Tensor, nn

from bayesym.layers.group_norm import GroupBatchNorm
from bayesym.layers.homotopic import HomotopicLayer
from curvature import BlockSpec, ForwardResult, ModuleAdapter, UnsupportedModuleError
from curvature.adapters import StatisticsRequest, covariance

__all__ = ["GroupBatchNormAdapter", "HomotopicAdapter"]


class HomotopicAdapter(ModuleAdapter):
    """Exact dense block of the homotopy coefficient ``homotopy_gamma``."""

    def blocks(self, module: nn.Module) -> tuple[BlockSpec, ...]:
        """``homotopy_gamma`` (dense)."""
        return (BlockSpec.dense_parameter(module, "homotopy_gamma"),)

    def forward_statistics(
        self, module: nn.Module, inputs: tuple[Any, ...], output: Tensor, request: StatisticsRequest
    ) -> ForwardResult:
        """``h = f_neq(x)`` (recomputed inside the adapter call, not captured twice)."""
        h = cast(HomotopicLayer, module).path_outputs(inputs[0])["neq"]
        return ForwardResult((None,), state=h.detach())

    def backward_statistics(
        self, module: nn.Module, state: Any, output_grads: Tensor, request: StatisticsRequest
    ) -> tuple[Tensor, ...]:
        """``Σ_{s,n} j²`` with ``j = <g, h>``."""
        s, n = output_grads.shape[:2]
        j = (output_grads.reshape(s, n, -1) * state.reshape(1, n, -1)).sum(-1)
        return (covariance(j.reshape(-1, 1)),)


class GroupBatchNormAdapter(ModuleAdapter):
    """Exact dense blocks of the affine parameters of the equivariant batch norm (eval mode)."""

    def blocks(self, module: nn.Module) -> tuple[BlockSpec, ...]:
        """``weight`` and ``bias`` (dense)."""
        return (
            BlockSpec.dense_parameter(module, "weight"),
            BlockSpec.dense_parameter(module, "bias"),
        )

    def forward_statistics(
        self, module: nn.Module, inputs: tuple[Any, ...], output: Tensor, request: StatisticsRequest
    ) -> ForwardResult:
        """The normalised input ``x̂`` (running statistics)."""
        norm = cast(GroupBatchNorm, module)
        if norm.training:
            raise UnsupportedModuleError(
                f"{type(norm).__name__}({norm.group.name}) is in train mode: batch statistics "
                "couple the data and the GGN does not factor over data points; call model.eval()"
            )
        x = inputs[0]
        base = norm.num_channels // norm.shared_copies
        grouped = x.reshape(x.shape[0], base, -1, *x.shape[-2:])
        mean, var = norm.get_buffer("running_mean"), norm.get_buffer("running_var")
        normed = F.batch_norm(grouped, mean, var, training=False, eps=norm.eps).reshape(x.shape)
        return ForwardResult((None, None), state=normed.detach())

    def backward_statistics(
        self, module: nn.Module, state: Any, output_grads: Tensor, request: StatisticsRequest
    ) -> tuple[Tensor, ...]:
        """Per-channel sums of ``g x̂`` and ``g``."""
        s, n, c = output_grads.shape[:3]
        g = output_grads.reshape(s, n, c, -1)
        j_w = (g * state.reshape(1, n, c, -1)).sum(-1).reshape(-1, c)
        j_b = g.sum(-1).reshape(-1, c)
        return (covariance(j_w), covariance(j_b))
