"""KFAC adapter for ``nn.Conv2d`` (Grosse & Martens 2016) honouring every conv setting.

Patches are built exactly as the forward pass sees its input: padded with the module's own
``padding_mode`` (``zeros``, ``reflect``, ``replicate``, ``circular``; int, tuple or string
padding including asymmetric ``"same"``), then unfolded with the module's kernel size,
dilation and stride. (ASDL and curvlinops zero-pad circular convs, which gives the curvature of
a different model.) With ``x`` the padded input, ``a_{n,t} [C_in/G · kh · kw]`` the patch at
output position ``t`` and ``g_{s,n,t}`` the output gradient there, each conv group ``k`` of the
weight ``[C_out, C_in/G, kh, kw]`` gets its own block ``B_k ⊗ A_k``:

* expand: ``A_k = Σ_{n,t} a aᵀ / (N T)``, ``B_k = Σ_{s,n,t} g gᵀ``;
* reduce: ``A_k = Σ_n ā ā ᵀ / N`` with ``ā = mean_t a``, ``B_k = Σ_{s,n} (Σ_t g)(Σ_t g)ᵀ``.

The bias is the dense output factor over all ``C_out`` channels (constant input ``a = 1``).
"""

from __future__ import annotations

from typing import Any, cast

import torch.nn.functional as F
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
    patch_covariance,
)
from curvature.adapters.conv_covariance import conv_patch_covariance
from curvature.factors import DenseFactor

__all__ = ["Conv2dAdapter", "conv2d_patches"]


def _pair(value: tuple[int, ...]) -> tuple[int, int]:
    """A 2-d conv's ``(height, width)`` setting (``nn.Conv2d`` stores all of them as pairs)."""
    height, width = value
    return height, width


def _padding(module: nn.Conv2d) -> list[int]:
    """``F.pad`` amounts ``[left, right, top, bottom]`` that the module's forward applies.

    ``padding="same"`` pads ``dilation · (k - 1)`` per axis, the smaller half before (as
    ``nn.Conv2d`` does: asymmetric for even kernels); ``"valid"`` pads nothing.
    """
    padding = module.padding
    if padding == "valid":
        return [0, 0, 0, 0]
    if isinstance(padding, str):  # "same"
        amounts = []
        for dilation, size in zip(
            reversed(module.dilation), reversed(module.kernel_size), strict=True
        ):
            total = dilation * (size - 1)
            amounts += [total // 2, total - total // 2]
        return amounts
    ph, pw = _pair(padding)
    return [pw, pw, ph, ph]


def _pad(module: nn.Conv2d, x: Tensor) -> Tensor:
    """``x`` padded as the module's forward pads it."""
    pad = _padding(module)
    if not any(pad):
        return x
    mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
    return F.pad(x, pad, mode=mode)


def conv2d_patches(module: nn.Conv2d, x: Tensor) -> Tensor:
    """Unfolded input patches exactly as ``module`` convolves them.

    Args:
        module: the convolution.
        x: ``[N, C_in, H, W]``.

    Returns:
        ``[N, C_in · kh · kw, T]`` with ``T = H_out · W_out``; the feature index is
        ``(c, i, j)`` row-major, matching ``weight.flatten(1)``.
    """
    return F.unfold(
        _pad(module, x), module.kernel_size, dilation=module.dilation, stride=module.stride
    )


class Conv2dAdapter(ModuleAdapter):
    """Per-conv-group ``B_k ⊗ A_k`` weight blocks and a dense bias block of ``nn.Conv2d``."""

    def blocks(self, module: nn.Module) -> tuple[BlockSpec, ...]:
        """One Kronecker block per conv group (``weight`` or ``weight.group<k>``) and ``bias``."""
        conv = cast(nn.Conv2d, module)  # the registry maps nn.Conv2d to this adapter
        c_out = conv.out_channels
        groups = conv.groups
        per_group_out = c_out // groups
        d_in = conv.weight[0].numel()
        size = per_group_out * d_in
        specs = []
        for k in range(groups):
            name = "weight" if groups == 1 else f"weight.group{k}"
            specs.append(
                BlockSpec(
                    name,
                    (("weight", k * size, (k + 1) * size),),
                    "kronecker",
                    per_group_out,
                    input_dim=d_in,
                )
            )
        return (*specs, *bias_blocks(module))

    def forward_statistics(
        self, module: nn.Module, inputs: tuple[Any, ...], output: Tensor, request: StatisticsRequest
    ) -> ForwardResult:
        """Per-group patch covariances (block-diagonal over groups, one block each)."""
        conv = cast(nn.Conv2d, module)
        x = check_tensor_input(conv, inputs, 4, "[N, C_in, H, W]")
        groups, n = conv.groups, x.shape[0]
        if request.approx == "expand" and tuple(conv.stride) == (1, 1):
            # no unfolded copy: window sums of shifted pixel products (conv_covariance.py)
            padded = _pad(conv, x)
            per_group = padded.shape[1] // groups
            covs = [
                conv_patch_covariance(
                    padded[:, k * per_group : (k + 1) * per_group],
                    _pair(conv.kernel_size),
                    _pair(conv.dilation),
                )
                for k in range(groups)
            ]
            count = n * output.shape[-2] * output.shape[-1]
        else:
            patches = conv2d_patches(conv, x)  # [N, G·D, T]
            t = patches.shape[-1]
            patches = patches.reshape(n, groups, -1, t)
            if request.approx == "expand":
                covs = [patch_covariance(patches[:, k]) for k in range(groups)]
                count = n * t
            else:
                covs = list(covariance(patches.mean(-1).transpose(0, 1)))  # G x [D, D]
                count = n
        stats = tuple(InputStatistic(DenseFactor(covs[k]), count) for k in range(groups))
        return ForwardResult((*stats, *if_bias(conv, None)))

    def backward_statistics(
        self, module: nn.Module, state: Any, output_grads: Tensor, request: StatisticsRequest
    ) -> tuple[Tensor, ...]:
        """Per-group ``Σ g gᵀ`` and, for the bias, the full ``[C_out, C_out]`` covariance."""
        s, n, c_out = output_grads.shape[:3]
        g = output_grads.reshape(s * n, c_out, -1)
        if request.approx == "reduce":
            g = g.sum(-1, keepdim=True)
        groups = cast(nn.Conv2d, module).groups
        if groups == 1:
            full = patch_covariance(g)
            return (full, *if_bias(module, full))
        per = c_out // groups
        out = tuple(patch_covariance(g[:, k * per : (k + 1) * per]) for k in range(groups))
        return (*out, *if_bias(module, patch_covariance(g)))
