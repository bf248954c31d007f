"""Data-free unit-variance initialisation of deep networks without normalisation layers.

The paper's 8-block network has no normalisation. With PyTorch's default (``nn.Linear``-style)
initialisation every ReLU block shrinks the second moment of the activations by ~6x, so after
8 blocks the logits barely depend on the input and training stalls for hundreds of steps.
Following LSUV (Mishkin & Matas
2016), each layer's weights are rescaled, layer by layer on a fixed Gaussian probe batch, until
its output has unit second moment; in a relaxed layer each of its ``K`` paths gets ``1/K`` of it,
so the sum of paths is unit too. Only weight-like parameters are scaled (not biases, RBF
lengthscales or anchor locations); factored layers (bilinear in two factors) converge because
the scale step uses the fourth root of the moment ratio.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor, nn

from bayesym.layers.paths import PathSum

__all__ = ["scale_to_unit_moment", "weight_like_parameters"]

_NOT_SCALED = ("bias", "omega", "anchor_locations", "architecture_logits", "homotopy_gamma")


def weight_like_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The parameters whose scale sets the layer's output scale."""
    return [
        p
        for name, p in module.named_parameters()
        if not any(name.rsplit(".", 1)[-1].startswith(skip) for skip in _NOT_SCALED)
    ]


@torch.no_grad()
def scale_to_unit_moment(
    module: nn.Module,
    forward: Callable[[], Tensor],
    target: float = 1.0,
    *,
    iterations: int = 12,
    tolerance: float = 1e-3,
) -> float:
    """Rescale ``module``'s weights until ``forward()`` has second moment ``target``.

    Args:
        module: the layer (or path) to rescale.
        forward: recomputes its output on the probe.
        target: wanted ``E[y²]``.
        iterations: at most this many rescaling steps.
        tolerance: stop when the moment is within this relative tolerance.

    Returns:
        The final second moment.
    """
    params = weight_like_parameters(module)
    moment = float(forward().square().mean())
    for _ in range(iterations):
        if not params or moment == 0.0 or abs(moment / target - 1.0) < tolerance:
            break
        factor = (target / moment) ** 0.25
        for p in params:
            p.mul_(factor)
        moment = float(forward().square().mean())
    return moment


def _path_output(layer: PathSum, x: Tensor, name: str) -> Tensor:
    return layer.path_outputs(x)[name]


@torch.no_grad()
def scale_layer(layer: nn.Module, x: Tensor) -> None:
    """Unit output moment for ``layer`` on input ``x``; ``1/K`` per path of a relaxed layer."""
    if isinstance(layer, PathSum):
        share = 1.0 / len(layer.paths)
        for name, path in layer.paths.items():
            scale_to_unit_moment(path, functools.partial(_path_output, layer, x, name), share)
    else:
        scale_to_unit_moment(layer, lambda: layer(x))
