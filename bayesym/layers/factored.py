"""F-FC: the factored fully-connected layer (Eq. (5) of the layer-wise paper)."""

from __future__ import annotations

import math

import torch
from torch import nn

from bayesym.layers._checks import (
    check_feature_map,
    check_spatial_sizes,
)
from bayesym.layers.symmetry import TRIVIAL_SYMMETRY, LayerSymmetry

__all__ = ["FactoredLinear", "factored_linear"]


def factored_linear(
    x: torch.Tensor,
    theta1: torch.Tensor,
    theta2: torch.Tensor,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    r"""Apply the factored map of Eq. (5) without materialising the dense weight.

    .. math::
        y[n, c', p'] = \sum_c \theta_1[c', c, p'] \sum_p \theta_2[c', c, p]\, x[n, c, p] + b[c']

    Cost ``O(N C' C (P_in + P_out))`` instead of ``O(N C' C P_in P_out)``.

    Args:
        x: ``[N, C_in, P_in]`` (positions flattened row-major).
        theta1: ``[C_out, C_in, P_out]`` output-side factor.
        theta2: ``[C_out, C_in, P_in]`` input-side factor.
        bias: ``[C_out]`` or None.

    Returns:
        ``[N, C_out, P_out]``.
    """
    pooled = torch.einsum("oip,nip->noi", theta2, x)  # x_1(c', c) of App. C.1, per sample
    y = torch.einsum("oiq,noi->noq", theta1, pooled)
    if bias is not None:
        y = y + bias.view(-1, 1)
    return y


class FactoredLinear(nn.Module):
    r"""F-FC layer: fully-connected between feature maps, factored over input/output positions.

    Eq. (5) of the layer-wise equivariance paper: the dense weight
    :math:`w(c', c, p', p) = \theta_1(c', c, p')\,\theta_2(c', c, p)` is never built;

    .. math::
        y(c', p') = \sum_c \theta_1(c', c, p') \sum_p x(c, p)\, \theta_2(c', c, p) + b(c'),

    with ``p = (x, y)`` the flattened spatial position (row-major). ``2 * C_out * C_in * H * W``
    weights instead of FC's ``C_out * C_in * H^2 * W^2``. No structural equivariance.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        spatial: ``(H, W)`` of input and output.
        bias: add a per-output-channel bias ``b(c')``.

    Shape:
        ``x: [N, C_in, H, W] -> [N, C_out, H, W]``.

    Attributes:
        theta1: ``[C_out, C_in, H * W]``, output-side factor (indexed by output position p').
        theta2: ``[C_out, C_in, H * W]``, input-side factor (indexed by input position p).
        bias: ``[C_out]`` or None.

    Initialisation: each factor like PyTorch's ``nn.Linear`` with its own fan-in, i.e.
    ``theta2 ~ U(+-1/sqrt(H W))`` (it sums over positions) and ``theta1 ~ U(+-1/sqrt(C_in))``
    (it sums over input channels).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> ffc = FactoredLinear(2, 3, spatial=(4, 4), bias=False)
        >>> sum(p.numel() for p in ffc.parameters())  # 2 C_out C_in H W (FC: C_out C_in (H W)^2)
        192
        >>> x = torch.randn(5, 2, 4, 4)
        >>> ffc(x).shape, ffc.intermediate(x).shape
        (torch.Size([5, 3, 4, 4]), torch.Size([5, 3, 2]))
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        spatial: tuple[int, int],
        bias: bool = True,
    ) -> None:
        super().__init__()
        sizes = check_spatial_sizes(self, in_channels, out_channels, spatial)
        self.in_channels, self.out_channels, self.spatial = sizes
        positions = self.spatial[0] * self.spatial[1]
        self.theta1 = nn.Parameter(torch.empty(out_channels, in_channels, positions))
        self.theta2 = nn.Parameter(torch.empty(out_channels, in_channels, positions))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise each factor like ``nn.Linear`` with its own fan-in (see class doc)."""
        positions = self.theta2.shape[-1]
        nn.init.uniform_(
            self.theta1, -1.0 / math.sqrt(self.in_channels), 1.0 / math.sqrt(self.in_channels)
        )
        nn.init.uniform_(self.theta2, -1.0 / math.sqrt(positions), 1.0 / math.sqrt(positions))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_channels * positions)
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def symmetry(self) -> LayerSymmetry:
        """No structural symmetry."""
        return TRIVIAL_SYMMETRY

    def intermediate(self, x: torch.Tensor) -> torch.Tensor:
        r"""The pooled inputs of ``theta1`` (App. C.1): ``[N, C_out, C_in]``.

        ``x_1[n, c', c] = sum_p theta2[c', c, p] x[n, c, p]``; the output is
        ``y[n, c', p'] = sum_c theta1[c', c, p'] x_1[n, c', c]`` (plus bias). Curvature
        adapters use it as the input statistic of ``theta1``.

        Args:
            x: ``[N, C_in, H, W]``.
        """
        check_feature_map(
            x, owner=self, channels=self.in_channels, spatial=self.spatial, dtype=self.theta1.dtype
        )
        return torch.einsum("oip,nip->noi", self.theta2, x.flatten(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply Eq. (5) to ``x: [N, C_in, H, W]``, returning ``[N, C_out, H, W]``."""
        check_feature_map(
            x, owner=self, channels=self.in_channels, spatial=self.spatial, dtype=self.theta1.dtype
        )
        y = factored_linear(x.flatten(2), self.theta1, self.theta2, self.bias)
        return y.view(x.shape[0], self.out_channels, *self.spatial)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return (
            f"{self.in_channels}, {self.out_channels}, spatial={self.spatial}, "
            f"bias={self.bias is not None}"
        )
