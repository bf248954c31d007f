"""Brute-force references for the curvature tests (dense, float64, tiny problems only)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev


def trainable(model: nn.Module) -> dict[str, Tensor]:
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def parameter_layout(model: nn.Module) -> list[tuple[str, int]]:
    return [(n, p.numel()) for n, p in model.named_parameters() if p.requires_grad]


def jacobian(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample Jacobians ``J: [N, C, P]`` of the outputs w.r.t. all trainable parameters."""
    params = trainable(model)

    def f(p):
        return functional_call(model, p, (x,))

    jac = jacrev(f)(params)
    out = f(params)
    n, c = out.shape
    return torch.cat([jac[k].reshape(n, c, -1) for k in params], dim=-1), out


def output_hessian(f: Tensor, likelihood: str, sigma: float = 1.0) -> Tensor:
    """``Λ_n`` for every datum: ``[N, C, C]``."""
    if likelihood == "classification":
        p = f.softmax(-1)
        return torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    n, c = f.shape
    return torch.eye(c, dtype=f.dtype).expand(n, c, c) / sigma**2


def exact_ggn(model: nn.Module, x: Tensor, likelihood: str = "classification", sigma: float = 1.0):
    """Dense GGN ``Σ_n J_nᵀ Λ_n J_n`` over all trainable parameters (named_parameters order)."""
    jac, f = jacobian(model, x)
    lam = output_hessian(f.detach(), likelihood, sigma)
    return torch.einsum("ncp,ncd,ndq->pq", jac, lam, jac)


def empirical_fisher(model: nn.Module, x: Tensor, y: Tensor, likelihood: str = "classification"):
    """Dense ``Σ_n ∇ℓ_n ∇ℓ_nᵀ`` of the per-sample negative log-likelihood gradients."""
    jac, f = jacobian(model, x)
    if likelihood == "classification":
        r = f.softmax(-1) - torch.nn.functional.one_hot(y, f.shape[1]).to(f.dtype)
    else:
        r = f - y
    grads = torch.einsum("ncp,nc->np", jac, r)
    return grads.T @ grads


def block(dense: Tensor, layout: list[tuple[str, int]], pieces) -> Tensor:
    """The sub-matrix of ``dense`` for parameter slices ``pieces`` (``ParameterSlice`` s)."""
    offsets, total = {}, 0
    for name, numel in layout:
        offsets[name] = total
        total += numel
    index = torch.cat(
        [torch.arange(offsets[p.name] + p.start, offsets[p.name] + p.stop) for p in pieces]
    )
    return dense[index[:, None], index[None, :]]


def output_jacobian(
    model: nn.Module, module: nn.Module, x: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """``∂f_n / ∂s_n`` for the output ``s`` of ``module``: ``[N, C, *s.shape[1:]]``.

    Computed with one backward pass per (datum, class) through a zero probe added to ``s``.
    Returns (jacobian, f, s).
    """
    store = {}

    def hook(mod, inputs, output):
        probe = torch.zeros_like(output, requires_grad=True)
        store["probe"], store["s"] = probe, output.detach()
        return output + probe

    handle = module.register_forward_hook(hook)
    try:
        f = model(x)
    finally:
        handle.remove()
    n, c = f.shape
    jac = torch.zeros(n, c, *store["s"].shape[1:], dtype=f.dtype)
    for i in range(n):
        for k in range(c):
            (g,) = torch.autograd.grad(f[i, k], store["probe"], retain_graph=True)
            jac[i, k] = g[i]
    return jac, f.detach(), store["s"]


def relative_error(approx: Tensor, exact: Tensor) -> float:
    return float(torch.linalg.matrix_norm(approx - exact) / torch.linalg.matrix_norm(exact))
