"""KFAC adapter for ``nn.Linear`` with any number of leading dimensions.

``y[n, r] = W x[n, r] + b`` for ``x: [N, *R, D_in]``: the leading dimensions after the batch
are weight-sharing positions ``r`` (sequence positions, tokens, ...). Blocks:

* ``weight`` — ``B ⊗ A`` with ``A [D_in, D_in]`` from inputs and ``B [D_out, D_out]`` from output
  gradients (row-major ``[out, in]`` order);
* ``bias`` — the dense output factor ``B``: the weight's block for a constant input ``a = 1``
  (same expand/reduce treatment as the weight, as ASDL and curvlinops do).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from curvature.adapters.base import (
    BlockSpec,
    ForwardResult,
    InputStatistic,
    ModuleAdapter,
    StatisticsRequest,
    bias_blocks,
    check_tensor_input,
    covariance,
    if_bias,
    rows_for,
)

__all__ = ["LinearAdapter"]


class LinearAdapter(ModuleAdapter):
    """Weight ``B ⊗ A`` and bias ``B`` blocks of ``nn.Linear``."""

    def blocks(self, module: nn.Module) -> tuple[BlockSpec, ...]:
        """``weight`` (Kronecker) and, if present, ``bias`` (dense)."""
        return (
            BlockSpec.kronecker_parameter(
                module, "weight", module.get_parameter("weight").shape[0]
            ),
            *bias_blocks(module),
        )

    def forward_statistics(
        self, module: nn.Module, inputs: tuple[Any, ...], output: Tensor, request: StatisticsRequest
    ) -> ForwardResult:
        """``Σ a aᵀ`` over (batch, positions) (expand) or over per-datum position means (reduce)."""
        x = check_tensor_input(module, inputs, 2, "[N, ..., in_features]")
        rows, n, r = rows_for(x)
        if request.approx == "expand":
            stat = InputStatistic.from_rows(rows.reshape(n * r, -1), n * r)
        else:
            stat = InputStatistic.from_rows(rows.mean(1), n)
        return ForwardResult((stat, *if_bias(module, None)))

    def backward_statistics(
        self, module: nn.Module, state: Any, output_grads: Tensor, request: StatisticsRequest
    ) -> tuple[Tensor, ...]:
        """``Σ g gᵀ`` over (directions, batch, positions), positions summed first for reduce."""
        s, n, d_out = output_grads.shape[0], output_grads.shape[1], output_grads.shape[-1]
        g = output_grads.reshape(s, n, -1, d_out)
        rows = g.reshape(-1, d_out) if request.approx == "expand" else g.sum(2).reshape(-1, d_out)
        b = covariance(rows)
        return (b, *if_bias(module, b))
