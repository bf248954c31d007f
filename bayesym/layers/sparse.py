"""Sparsified layers S-CONV (Eq. (6)) and S-FC (Eq. (7)): weights interpolated from anchors.

Both hold *anchor values* ``u`` as parameters and an :class:`~bayesym.layers.anchors.RBFBasis`
per spatial domain; the weights are ``u @ Psi``. :meth:`basis_matrices` maps each anchor
parameter to its basis matrix ``Psi`` (``[M, positions]``) so that a curvature adapter can
pull dense Kronecker factors back (``A_u = Psi A Psi^T``).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from bayesym.layers._checks import check_feature_map, check_spatial_sizes
from bayesym.layers.anchors import RBFBasis
from bayesym.layers.conv import PaddingMode, SameConv2dBase
from bayesym.layers.factored import factored_linear
from bayesym.layers.symmetry import TRIVIAL_SYMMETRY, LayerSymmetry

__all__ = ["SparseConv2d", "SparseFactoredLinear"]


class SparseConv2d(SameConv2dBase):
    r"""S-CONV: a stride-1 convolution whose ``S x S`` filter is interpolated from anchors (Eq. 6).

    .. math::
        \bar s(c', c, u) = \sum_{j=1}^{M} \bar u_{c', c, j}\, \phi_j(u), \qquad
        \phi_j(u) = \exp(-\omega^2 \lVert u - z_j \rVert^2),

    with ``u`` the filter offset in pixels (``{-(S-1)/2, ..., (S-1)/2}^2``), anchors ``z_j``
    shared by all channel pairs, then ``y = conv(x, s) + b`` exactly as
    :class:`~bayesym.layers.conv.SpatialConv2d` with the same ``padding_mode`` (every mode is
    honoured; circular padding gives exact cyclic-shift equivariance).

    Parameters: ``C_out * C_in * M`` anchor values, ``+ 2 M`` with learnable anchor locations,
    ``+ 1`` with a learnable ``omega``, ``+ C_out`` with bias. Default ``M = ceil(S^2 / 2)``.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        kernel_size: odd filter size ``S``.
        num_anchors: ``M`` (``None``: ``ceil(S^2 / 2)`` on a checkerboard, App. F.4).
        omega: initial inverse lengthscale of the RBF basis (1/pixels).
        learnable_anchors: learn the anchor locations ``z`` (parameter ``basis.anchor_locations``).
        learnable_omega: learn ``omega`` (parameter ``basis.omega``).
        padding_mode: see :data:`~bayesym.layers.conv.PaddingMode`.
        bias: per-output-channel bias.

    Shape:
        ``x: [N, C_in, H, W] -> [N, C_out, H, W]``.

    Attributes:
        anchor_values: ``[C_out, C_in, M]`` anchor values ``u``.
        basis: :class:`RBFBasis` on the ``S x S`` filter window.
        bias: ``[C_out]`` or None.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> sconv = SparseConv2d(2, 3, kernel_size=3, bias=False)
        >>> sconv.anchor_values.shape, sconv.filter().shape
        (torch.Size([3, 2, 5]), torch.Size([3, 2, 3, 3]))
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        num_anchors: int | None = None,
        omega: float = 1.0,
        learnable_anchors: bool = False,
        learnable_omega: bool = False,
        padding_mode: PaddingMode = "circular",
        bias: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding_mode)
        self.basis = RBFBasis(
            (kernel_size, kernel_size),
            num_anchors,
            omega=omega,
            learnable_anchors=learnable_anchors,
            learnable_omega=learnable_omega,
        )
        self.anchor_values = nn.Parameter(
            torch.empty(out_channels, in_channels, self.basis.num_anchors)
        )
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Anchor values ``U(+-b)``, ``b`` from :meth:`RBFBasis.init_bound` (fan_in C_in S^2)."""
        fan_in = self.in_channels * self.kernel_size**2
        bound = self.basis.init_bound(fan_in)
        nn.init.uniform_(self.anchor_values, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -(fan_in**-0.5), fan_in**-0.5)

    def filter(self) -> torch.Tensor:
        """The interpolated filter ``s = u @ Psi``: ``[C_out, C_in, S, S]``."""
        weight = torch.einsum("oim,mk->oik", self.anchor_values, self.basis.matrix())
        return weight.reshape(
            self.out_channels, self.in_channels, self.kernel_size, self.kernel_size
        )

    def basis_matrices(self) -> dict[str, torch.Tensor]:
        """``{"anchor_values": Psi}`` with ``Psi: [M, S * S]`` (filter offsets row-major)."""
        return {"anchor_values": self.basis.matrix()}

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"num_anchors={self.basis.num_anchors}, padding_mode={self.padding_mode!r}, "
            f"bias={self.bias is not None}"
        )


class SparseFactoredLinear(nn.Module):
    r"""S-FC: the factored FC layer with both spatial factors interpolated from anchors (Eq. 7).

    .. math::
        y(c', p') = \sum_c s_1(c', c, p') \sum_p x(c, p)\, s_2(c', c, p) + b(c'),
        \quad s_k(c', c, p) = \sum_j u^{(k)}_{c', c, j}\, \phi^{(k)}_j(p),

    where ``s_1`` (output side) and ``s_2`` (input side) each have their own RBF basis over
    the ``H x W`` grid (their own anchors and ``omega``). Parameters:
    ``C_out * C_in * (M_out + M_in)`` anchor values (the paper's ``C'CP`` with ``P`` the total
    number of anchor points), ``+ 2 (M_out + M_in)`` with learnable anchor locations, ``+ 2``
    with learnable ``omega``\ s, ``+ C_out`` with bias. Default ``M_out = M_in = ceil(H W / 2)``
    (App. F.4). No structural equivariance.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        spatial: ``(H, W)`` of input and output.
        num_anchors: ``M_out = M_in`` (``None``: ``ceil(H W / 2)`` on a checkerboard).
        omega: initial inverse lengthscale of both bases (1/pixels).
        learnable_anchors: learn ``basis_out.anchor_locations`` and ``basis_in.anchor_locations``.
        learnable_omega: learn ``basis_out.omega`` and ``basis_in.omega``.
        bias: per-output-channel bias.

    Shape:
        ``x: [N, C_in, H, W] -> [N, C_out, H, W]``.

    Attributes:
        anchor_values_out: ``[C_out, C_in, M_out]`` anchor values of ``s_1`` (output positions).
        anchor_values_in: ``[C_out, C_in, M_in]`` anchor values of ``s_2`` (input positions).
        basis_out: :class:`RBFBasis` of ``s_1``.
        basis_in: :class:`RBFBasis` of ``s_2``.
        bias: ``[C_out]`` or None.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> sfc = SparseFactoredLinear(2, 3, spatial=(4, 4), bias=False)
        >>> sum(p.numel() for p in sfc.parameters()) == 3 * 2 * (8 + 8)
        True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        spatial: tuple[int, int],
        num_anchors: int | None = None,
        omega: float = 1.0,
        learnable_anchors: bool = False,
        learnable_omega: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        sizes = check_spatial_sizes(self, in_channels, out_channels, spatial)
        self.in_channels, self.out_channels, self.spatial = sizes
        basis = functools.partial(
            RBFBasis,
            self.spatial,
            num_anchors,
            omega=omega,
            learnable_anchors=learnable_anchors,
            learnable_omega=learnable_omega,
        )
        self.basis_out, self.basis_in = basis(), basis()
        self.anchor_values_out = nn.Parameter(
            torch.empty(out_channels, in_channels, self.basis_out.num_anchors)
        )
        self.anchor_values_in = nn.Parameter(
            torch.empty(out_channels, in_channels, self.basis_in.num_anchors)
        )
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Interpolated factors match :class:`FactoredLinear`'s init scale (fan-ins C_in, H W)."""
        positions = self.spatial[0] * self.spatial[1]
        bound_out = self.basis_out.init_bound(self.in_channels)
        bound_in = self.basis_in.init_bound(positions)
        nn.init.uniform_(self.anchor_values_out, -bound_out, bound_out)
        nn.init.uniform_(self.anchor_values_in, -bound_in, bound_in)
        if self.bias is not None:
            bound = (self.in_channels * positions) ** -0.5
            nn.init.uniform_(self.bias, -bound, bound)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Interpolated ``(s_1, s_2)``, each ``[C_out, C_in, H * W]`` (F-FC's theta1, theta2)."""
        theta1 = torch.einsum("oim,mp->oip", self.anchor_values_out, self.basis_out.matrix())
        theta2 = torch.einsum("oim,mp->oip", self.anchor_values_in, self.basis_in.matrix())
        return theta1, theta2

    def basis_matrices(self) -> dict[str, torch.Tensor]:
        """``{"anchor_values_out": Psi_out, "anchor_values_in": Psi_in}``, each ``[M, H * W]``."""
        return {
            "anchor_values_out": self.basis_out.matrix(),
            "anchor_values_in": self.basis_in.matrix(),
        }

    @property
    def symmetry(self) -> LayerSymmetry:
        """None in general; cyclic shifts when both ``omega`` are exactly 0.

        At ``omega = 0`` every basis function is constant, so ``s_1`` and ``s_2`` do not
        depend on position and the layer maps ``x`` to a per-channel global sum broadcast
        over the grid: exactly shift-equivariant. This is the limit a zero-variance prior on
        the lengthscales enforces (Sec. 3.2).
        """
        if bool(self.basis_out.omega.detach() == 0) and bool(self.basis_in.omega.detach() == 0):
            return LayerSymmetry(translations=True)
        return TRIVIAL_SYMMETRY

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply Eq. (7) to ``x: [N, C_in, H, W]``, returning ``[N, C_out, H, W]``."""
        check_feature_map(
            x,
            owner=self,
            channels=self.in_channels,
            spatial=self.spatial,
            dtype=self.anchor_values_in.dtype,
        )
        theta1, theta2 = self.factors()
        y = factored_linear(x.flatten(2), theta1, theta2, self.bias)
        return y.view(x.shape[0], self.out_channels, *self.spatial)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return (
            f"{self.in_channels}, {self.out_channels}, spatial={self.spatial}, "
            f"num_anchors=({self.basis_out.num_anchors}, {self.basis_in.num_anchors}), "
            f"bias={self.bias is not None}"
        )
