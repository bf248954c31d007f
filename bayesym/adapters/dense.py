r"""KFAC adapters of the unstructured layers: FC on feature maps and AEN orbit-shared FC.

* :class:`~bayesym.layers.dense.SpatialLinear` *is* a linear layer on the flattened map:
  ``B ⊗ A`` with ``A`` over ``x.flatten(1)`` and ``B`` over ``y.flatten(1)``; a per-unit bias is
  the dense ``B``, a per-channel bias (shared by the positions) its exact GGN block.
* :class:`~bayesym.layers.shared.OrbitSharedLinear` has ``W = θ[orbit]``: the GGN of ``θ`` is
  ``Eᵀ (B ⊗ A) E`` for the orbit indicator ``E``, not Kronecker. It gets its *exact* GGN block
  ``Σ_{s,n} j jᵀ`` from per-datum gradients ``j[o] = Σ_{(i,k) ∈ o} g_i x_k`` (a single-position
  layer: no weight-sharing approximation at all), which costs ``O(#orbits²)`` memory — meant for
  the small layers it is used in; larger ones are refused by the engine's memory limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import torch
from torch import Tensor, nn

from bayesym.layers.dense import SpatialLinear
from bayesym.layers.shared import OrbitSharedLinear
from curvature import BlockSpec, ForwardResult, InputStatistic, ModuleAdapter
from curvature.adapters import (
    LinearAdapter,
    StatisticsRequest,
    bias_blocks,
    covariance,
    gram_sum,
    if_bias,
)

__all__ = ["OrbitSharedLinearAdapter", "SpatialLinearAdapter"]


class SpatialLinearAdapter(LinearAdapter):
    """FC: ``weight [C_out P, C_in P]`` as ``nn.Linear`` on ``x.flatten(1)`` (its blocks)."""

    def forward_statistics(
        self, module: nn.Module, inputs: tuple[Any, ...], output: Tensor, request: StatisticsRequest
    ) -> ForwardResult:
        """``Σ x xᵀ`` over the flattened inputs."""
        x = inputs[0].flatten(1)
        return ForwardResult((InputStatistic.from_rows(x, x.shape[0]), *if_bias(module, None)))

    def backward_statistics(
        self, module: nn.Module, state: Any, output_grads: Tensor, request: StatisticsRequest
    ) -> tuple[Tensor, ...]:
        """``Σ g gᵀ`` over flattened outputs; the bias block summed over positions if shared."""
        s, n = output_grads.shape[:2]
        g = output_grads.reshape(s * n, -1)
        b = covariance(g)
        bias = cast(SpatialLinear, module).bias
        if bias is None:
            return (b,)
        if bias.numel() == g.shape[1]:  # one bias per output unit
            return (b, b)
        return (b, covariance(g.reshape(s * n, bias.numel(), -1).sum(-1)))


def _orbit_rows(
    index: Tensor, k: int, x: Tensor, output_grads: Tensor, chunk_bytes: int = 64 << 20
) -> Iterator[Tensor]:
    """Chunks of the rows ``j = Eᵀ vec(g xᵀ)`` over (direction, datum), about ``chunk_bytes``."""
    limit = max(1, chunk_bytes // (k * x.element_size()))
    pending, rows = [], 0
    for g in output_grads:  # [N, m]
        outer = (g[:, :, None] * x[:, None, :]).reshape(g.shape[0], -1)
        pending.append(outer.new_zeros(g.shape[0], k).index_add_(1, index, outer))
        rows += g.shape[0]
        if rows >= limit:
            yield torch.cat(pending)
            pending, rows = [], 0
    if pending:
        yield torch.cat(pending)


class OrbitSharedLinearAdapter(ModuleAdapter):
    """AEN parameter sharing: exact dense GGN blocks of the orbit weights and biases."""

    def blocks(self, module: nn.Module) -> tuple[BlockSpec, ...]:
        """``orbit_weights`` and ``orbit_bias`` (dense, exact)."""
        return (
            BlockSpec.dense_parameter(module, "orbit_weights"),
            *bias_blocks(module, "orbit_bias"),
        )

    def forward_statistics(
        self, module: nn.Module, inputs: tuple[Any, ...], output: Tensor, request: StatisticsRequest
    ) -> ForwardResult:
        """Keep the inputs for the per-datum gradients."""
        stats = (None, *if_bias(module, None, attr="orbit_bias"))
        return ForwardResult(stats, state=inputs[0].detach())

    def backward_statistics(
        self, module: nn.Module, state: Any, output_grads: Tensor, request: StatisticsRequest
    ) -> tuple[Tensor, ...]:
        """``Σ j jᵀ`` with ``j = Eᵀ vec(g xᵀ)``.

        The rows ``j`` are formed one direction at a time (the outer products ``g xᵀ`` are the
        large temporaries) and multiplied into the ``[K, K]`` sum in chunks of about 64 MiB of
        rows by :func:`curvature.adapters.gram_sum` (a symmetric product for thousands of
        orbits), instead of one general product per direction.
        """
        layer = cast(OrbitSharedLinear, module)
        x = state  # [N, n_in]
        k = layer.orbit_weights.numel()
        orbits = layer.get_buffer("orbit_index").reshape(-1)
        h = gram_sum(_orbit_rows(orbits, k, x, output_grads), k, x)
        if layer.orbit_bias is None:
            return (h,)
        kb = layer.orbit_bias.numel()
        rows = output_grads.reshape(-1, output_grads.shape[-1])
        jb = rows.new_zeros(rows.shape[0], kb).index_add_(1, layer.get_buffer("bias_index"), rows)
        return (h, covariance(jb))
