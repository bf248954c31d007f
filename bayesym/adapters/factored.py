r"""KFAC adapters of the factored layers F-FC and S-FC (paper Sec. 5.1, 5.2, App. C.1, C.2).

F-FC computes ``x_1[n, o, c] = Σ_p θ_2[o, c, p] x[n, c, p]`` then
``y[n, o, q] = Σ_c θ_1[o, c, q] x_1[n, o, c] + b[o]``. Each factor is a linear map applied at
channel copies with block-sparse inputs, so its input factor is block-diagonal (never
materialised):

* ``θ_2`` (``[(o), (c, p)]`` order, ``B_2 ⊗ A_2``): ``A_2 = blockdiag_c(Σ_n x_c x_cᵀ) / (N C_in)``,
  ``B_2 = Σ_{s,n,c} g_c g_cᵀ`` with ``g_c[o] = ∂f/∂x_1[n, o, c] = Σ_q θ_1[o, c, q] ∂f/∂y[n, o, q]``;
* ``θ_1`` (``[(o, c), (q)]`` order, ``A_1 ⊗ B_1``):
  ``A_1 = blockdiag_o(Σ_n x_{1,o} x_{1,o}ᵀ) / (N C_out)``, ``B_1 = Σ_{s,n,o} ∂f/∂y[n, o, :] (…)ᵀ``;
* bias: its exact GGN block ``Σ_{s,n} ĝ ĝᵀ`` with ``ĝ[o] = Σ_q ∂f/∂y[n, o, q]``.

The channel copies are always expanded (their inputs have disjoint supports, so reducing them
would destroy the block structure). S-FC interpolates ``θ_k = u_k Ψ_k``: ``u_2``'s blocks are
``Ψ_2 A_{2,c} Ψ_2ᵀ``, ``u_1``'s output factor ``Ψ_1 B_1 Ψ_1ᵀ`` (App. C.2); learnable RBF
parameters get exact dense blocks from tangents.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn

from bayesym.adapters.convolutions import (
    learnable_basis_parameters,
    tangent_blocks,
    tangent_specs,
    tangents_of,
)
from bayesym.layers.factored import FactoredLinear
from bayesym.layers.sparse import SparseFactoredLinear
from curvature import BlockSpec, ForwardResult, InputStatistic, ModuleAdapter
from curvature.adapters import (
    BlockDiagonalFactor,
    StatisticsRequest,
    bias_blocks,
    covariance,
    if_bias,
)

__all__ = ["FactoredLinearAdapter"]


class FactoredLinearAdapter(ModuleAdapter):
    """F-FC (``theta1``, ``theta2``) and S-FC (``anchor_values_out``, ``anchor_values_in``)."""

    @staticmethod
    def _names(module: nn.Module) -> tuple[str, str]:
        if isinstance(module, SparseFactoredLinear):
            return "anchor_values_out", "anchor_values_in"
        return "theta1", "theta2"

    @staticmethod
    def _factors(module: nn.Module) -> tuple[Tensor, Tensor]:
        if isinstance(module, SparseFactoredLinear):
            return module.factors()
        layer = cast(FactoredLinear, module)
        return layer.theta1, layer.theta2

    @staticmethod
    def _bases(module: nn.Module) -> tuple[Tensor | None, Tensor | None]:
        if isinstance(module, SparseFactoredLinear):
            return module.basis_out.matrix().detach(), module.basis_in.matrix().detach()
        return None, None

    def blocks(self, module: nn.Module) -> tuple[BlockSpec, ...]:
        """Output-side and input-side factors (Kronecker, block-diagonal A), tangents, bias."""
        out_name, in_name = self._names(module)
        c_out, c_in, m_out = module.get_parameter(out_name).shape
        specs = [
            BlockSpec.kronecker_parameter(
                module, out_name, m_out, input_blocks=c_out, order="input_output"
            ),
            BlockSpec.kronecker_parameter(module, in_name, c_out, input_blocks=c_in),
            *tangent_specs(module, learnable_basis_parameters(module)),
            *bias_blocks(module),
        ]
        return tuple(specs)

    def forward_statistics(
        self, module: nn.Module, inputs: tuple[Any, ...], output: Tensor, request: StatisticsRequest
    ) -> ForwardResult:
        """Per-channel input covariances of both factors (projected for S-FC)."""
        x = inputs[0].flatten(2)  # [N, C_in, P]
        theta1, theta2 = (t.detach() for t in self._factors(module))
        x1 = torch.einsum("oip,nip->noi", theta2, x)  # [N, C_out, C_in]
        n, c_out, c_in = x1.shape
        psi_out, psi_in = self._bases(module)
        a1 = covariance(x1.transpose(0, 1))  # [C_out, C_in, C_in]
        rows2 = x.transpose(0, 1)  # [C_in, N, P]
        if psi_in is not None:
            rows2 = rows2 @ psi_in.to(rows2).T  # a Ψᵀ: [C_in, N, M_in]
        a2 = covariance(rows2)
        names = learnable_basis_parameters(module)
        tangents = tangents_of(module, inputs, names, request)
        stats = [
            InputStatistic(BlockDiagonalFactor(a1), n * c_out),
            InputStatistic(BlockDiagonalFactor(a2), n * c_in),
            *([None] * len(names)),
            *if_bias(module, None),
        ]
        return ForwardResult(tuple(stats), state=(theta1, psi_out, tangents))

    def backward_statistics(
        self, module: nn.Module, state: Any, output_grads: Tensor, request: StatisticsRequest
    ) -> tuple[Tensor, ...]:
        """``B_1`` (projected for S-FC), ``B_2`` through ``θ_1``, tangent and bias blocks."""
        theta1, psi_out, tangents = state
        s, n, c_out = output_grads.shape[:3]
        g = output_grads.reshape(s, n, c_out, -1)  # [S, N, C_out, P_out]
        b1 = covariance(g.reshape(-1, g.shape[-1]))
        if psi_out is not None:
            psi = psi_out.to(b1)
            b1 = psi @ b1 @ psi.T
        g2 = torch.einsum("ocq,snoq->snco", theta1, g)  # ∂f/∂x_1, rows (s, n, c)
        out = [b1, covariance(g2.reshape(-1, c_out))]
        names = learnable_basis_parameters(module)
        out.extend(tangent_blocks(module, names, tangents, output_grads))
        if module.bias is not None:
            out.append(covariance(g.sum(-1).reshape(-1, c_out)))
        return tuple(out)
