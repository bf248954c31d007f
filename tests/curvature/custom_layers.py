"""Test-only custom layers of the three kinds the extension point must cover, with adapters.

1. ``PermutedSharedLinear``: a linear map with an extra weight-sharing dimension (like group
   elements): ``y[n, g] = W x[n, π_g]`` for fixed input permutations ``π_g``.
2. ``TinyFactoredLinear``: a factored layer (paper Eq. 5) whose input factors are
   block-diagonal: ``out[n,o,q] = Σ_c θ1[o,c,q] Σ_p θ2[o,c,p] x[n,c,p]``.
3. ``AnchorLinear``: weights that are a fixed basis projection of free parameters ``W = U Ψ``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from curvature import BlockSpec, ForwardResult, InputStatistic, ModuleAdapter
from curvature.adapters import BlockDiagonalFactor, DenseFactor, covariance, project_rows
from curvature.registry import ADAPTERS


class PermutedSharedLinear(nn.Module):
    def __init__(self, d_in: int, d_out: int, permutations: Tensor):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d_out, d_in) / d_in**0.5)
        self.register_buffer("permutations", permutations)  # [G, d_in]

    def forward(self, x: Tensor) -> Tensor:  # [N, d_in] -> [N, G, d_out]
        return x[:, self.permutations] @ self.weight.T


class PermutedSharedLinearAdapter(ModuleAdapter):
    def blocks(self, module):
        d_out, d_in = module.weight.shape
        return (BlockSpec("weight", (("weight", 0, d_out * d_in),), "kronecker", d_out, d_in),)

    def forward_statistics(self, module, inputs, output, request):
        a = inputs[0][:, module.permutations]  # [N, G, d_in]
        n, g, _ = a.shape
        if request.approx == "expand":
            return ForwardResult(
                (InputStatistic(DenseFactor(covariance(a.reshape(n * g, -1))), n * g),)
            )
        return ForwardResult((InputStatistic(DenseFactor(covariance(a.mean(1))), n),))

    def backward_statistics(self, module, state, output_grads, request):
        d_out = output_grads.shape[-1]
        rows = output_grads if request.approx == "expand" else output_grads.sum(2)
        return (covariance(rows.reshape(-1, d_out)),)


class TinyFactoredLinear(nn.Module):
    def __init__(self, c_in: int, c_out: int, p_in: int, p_out: int):
        super().__init__()
        self.theta1 = nn.Parameter(torch.randn(c_out, c_in, p_out) / c_in**0.5)
        self.theta2 = nn.Parameter(torch.randn(c_out, c_in, p_in) / p_in**0.5)
        self.probe: Tensor | None = None  # tests add a zero tensor here to differentiate x1

    def intermediate(self, x: Tensor) -> Tensor:  # x1[n, o, c]
        return torch.einsum("ocp,ncp->noc", self.theta2, x)

    def forward(self, x: Tensor) -> Tensor:  # [N, c_in, p_in] -> [N, c_out, p_out]
        x1 = self.intermediate(x)
        if self.probe is not None:
            x1 = x1 + self.probe
        return torch.einsum("ocq,noc->noq", self.theta1, x1)


class TinyFactoredLinearAdapter(ModuleAdapter):
    """θ2: ``B2 ⊗ blockdiag_c(A2_c)`` ([out, (c, p)] order); θ1: ``blockdiag_o(A1_o) ⊗ B1``."""

    def blocks(self, module):
        c_out, c_in, p_out = module.theta1.shape
        p_in = module.theta2.shape[-1]
        return (
            BlockSpec(
                "theta1",
                (("theta1", 0, module.theta1.numel()),),
                "kronecker",
                p_out,
                input_dim=c_out * c_in,
                input_blocks=c_out,
                order="input_output",
            ),
            BlockSpec(
                "theta2",
                (("theta2", 0, module.theta2.numel()),),
                "kronecker",
                c_out,
                input_dim=c_in * p_in,
                input_blocks=c_in,
            ),
        )

    def forward_statistics(self, module, inputs, output, request):
        x = inputs[0]  # [N, c_in, p_in]
        x1 = module.intermediate(x)  # [N, c_out, c_in]
        n, c_out, c_in = x1.shape
        a2 = covariance(x.transpose(0, 1))  # per input channel c: Σ_n x x^T -> [c_in, p, p]
        a1 = covariance(x1.transpose(0, 1))  # per output channel o: [c_out, c_in, c_in]
        return ForwardResult(
            (
                InputStatistic(BlockDiagonalFactor(a1), n * c_out),
                InputStatistic(BlockDiagonalFactor(a2), n * c_in),
            )
        )

    def backward_statistics(self, module, state, output_grads, request):
        p_out = output_grads.shape[-1]
        b1 = covariance(output_grads.reshape(-1, p_out))  # rows (s, n, o)
        g2 = torch.einsum("ocq,snoq->snco", module.theta1, output_grads)  # ∂f/∂x1, rows (s,n,c)
        b2 = covariance(g2.reshape(-1, g2.shape[-1]))
        return (b1, b2)


class AnchorLinear(nn.Module):
    def __init__(self, d_in: int, d_out: int, anchors: int):
        super().__init__()
        grid = torch.linspace(0, 1, d_in)
        centres = torch.linspace(0, 1, anchors)
        self.register_buffer("basis", torch.exp(-((grid[None] - centres[:, None]) ** 2) * 20))
        self.anchor_values = nn.Parameter(torch.randn(d_out, anchors))

    def forward(self, x: Tensor) -> Tensor:
        return x @ (self.anchor_values @ self.basis).T


class AnchorLinearAdapter(ModuleAdapter):
    """``W = U Ψ``: ``A_u = Ψ A Ψᵀ`` from projected inputs, ``B`` as for Linear."""

    def blocks(self, module):
        d_out, m = module.anchor_values.shape
        return (
            BlockSpec("anchor_values", (("anchor_values", 0, d_out * m),), "kronecker", d_out, m),
        )

    def forward_statistics(self, module, inputs, output, request):
        rows = project_rows(inputs[0], module.basis)  # a Ψᵀ: [N, M]
        return ForwardResult((InputStatistic(DenseFactor(covariance(rows)), rows.shape[0]),))

    def backward_statistics(self, module, state, output_grads, request):
        return (covariance(output_grads.reshape(-1, output_grads.shape[-1])),)


def registry() -> dict:
    """The default table plus the test-only adapters (kept out of the global registry)."""
    return {
        **ADAPTERS,
        PermutedSharedLinear: PermutedSharedLinearAdapter(),
        TinyFactoredLinear: TinyFactoredLinearAdapter(),
        AnchorLinear: AnchorLinearAdapter(),
    }


class ScaledLinear(nn.Module):
    """``y = exp(τ) · (W x)``: a Kronecker block for ``W`` and an exact dense block for ``τ``."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d_out, d_in) / d_in**0.5)
        self.log_scale = nn.Parameter(torch.tensor([0.3]))
        self.inner = nn.Linear(d_in, d_in)  # a registered child: must not be captured twice

    def forward(self, x: Tensor) -> Tensor:
        return self.log_scale.exp() * (self.inner(x) @ self.weight.T)


class ScaledLinearAdapter(ModuleAdapter):
    def blocks(self, module):
        d_out, d_in = module.weight.shape
        return (
            BlockSpec("weight", (("weight", 0, d_out * d_in),), "kronecker", d_out, d_in),
            BlockSpec("log_scale", (("log_scale", 0, 1),), "dense", 1),
        )

    def forward_statistics(self, module, inputs, output, request):
        from curvature.adapters import parameter_tangents

        a = module.inner(inputs[0])  # recomputed inside the adapter call: not captured
        tangents = parameter_tangents(module, inputs, ["log_scale"])
        return ForwardResult(
            (InputStatistic(DenseFactor(covariance(a)), a.shape[0]), None), state=tangents
        )

    def backward_statistics(self, module, state, output_grads, request):
        from curvature.adapters import tangent_ggn

        g = output_grads * module.log_scale.exp()  # ∂f/∂(W a)
        return (covariance(g.reshape(-1, g.shape[-1])), tangent_ggn(state, output_grads))


def registry_with_scaled() -> dict:
    return {**registry(), ScaledLinear: ScaledLinearAdapter()}
