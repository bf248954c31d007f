r"""RBF anchor-point basis of the sparsified layers S-CONV and S-FC (Sec. 3.1, App. F.4).

A spatial weight ``s(p)`` over a grid of positions ``p`` is interpolated from ``M`` anchor
points with values ``u_j`` at locations ``z_j``:

.. math::
    s(p) = \sum_{j=1}^{M} u_j\, \phi_j(p), \qquad
    \phi_j(p) = \exp\!\left(-\omega^2 \lVert p - z_j \rVert^2\right).

Coordinates are in **pixel units**, ``p = (row, column)`` measured from the centre of the
grid (so a 3x3 filter has offsets in ``{-1, 0, 1}^2`` and a 4x4 map has positions in
``{-1.5, -0.5, 0.5, 1.5}^2``); ``omega`` is therefore an inverse lengthscale in 1/pixels
(``omega = 1``: a basis function falls to ``1/e`` one pixel from its anchor). The basis is
*not* normalised (no partition of unity), exactly as in the paper's formula; the layers
compensate in their initialisation instead.

The basis matrix ``Psi[j, p] = phi_j(p)`` (``[M, P]``) is what a curvature adapter needs to
pull dense Kronecker factors back to anchor values: ``A_u = Psi A Psi^T``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bayesym.checks import check_positive_int
from bayesym.layers._checks import check_finite_float, check_spatial

__all__ = [
    "RBFBasis",
    "checkerboard_anchors",
    "default_num_anchors",
    "farthest_point_anchors",
    "grid_coordinates",
]


def grid_coordinates(spatial: tuple[int, int], dtype: torch.dtype | None = None) -> torch.Tensor:
    """Centred pixel coordinates of an ``H x W`` grid, row-major.

    Args:
        spatial: ``(H, W)``.
        dtype: floating dtype (default: torch's default dtype).

    Returns:
        ``[H * W, 2]`` with rows ``(h - (H - 1) / 2, w - (W - 1) / 2)``.

    Example:
        >>> grid_coordinates((1, 3)).tolist()
        [[0.0, -1.0], [0.0, 0.0], [0.0, 1.0]]
    """
    height, width = check_spatial(spatial, owner="grid_coordinates")
    rows = torch.arange(height, dtype=dtype) - (height - 1) / 2
    cols = torch.arange(width, dtype=dtype) - (width - 1) / 2
    grid_r, grid_c = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([grid_r.reshape(-1), grid_c.reshape(-1)], dim=-1)


def default_num_anchors(spatial: tuple[int, int]) -> int:
    """Half the number of positions, rounded up (App. F.4): ``ceil(H W / 2)``."""
    height, width = check_spatial(spatial, owner="default_num_anchors")
    return (height * width + 1) // 2


def checkerboard_anchors(
    spatial: tuple[int, int], dtype: torch.dtype | None = None
) -> torch.Tensor:
    """The default anchor layout: the 'white' squares ``(h + w)`` even of a checkerboard.

    There are exactly ``ceil(H W / 2)`` of them (App. F.4's "half the number of positions,
    rounded up"), spread evenly, and the layout is symmetric under the grid's rotations and
    flips when ``H = W`` is odd.

    Args:
        spatial: ``(H, W)``.
        dtype: floating dtype.

    Returns:
        ``[ceil(H W / 2), 2]`` anchor coordinates (centred pixel units).

    Example:
        >>> checkerboard_anchors((3, 3)).tolist()
        [[-1.0, -1.0], [-1.0, 1.0], [0.0, 0.0], [1.0, -1.0], [1.0, 1.0]]
    """
    height, width = check_spatial(spatial, owner="checkerboard_anchors")
    coords = grid_coordinates((height, width), dtype)
    index = torch.arange(height * width)
    white = (index // width + index % width) % 2 == 0
    return coords[white]


def farthest_point_anchors(
    spatial: tuple[int, int], num_anchors: int, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """``M`` grid positions chosen by deterministic farthest-point sampling.

    Starts at the position nearest the grid centre and repeatedly adds the position whose
    distance to the chosen set is largest (ties: lowest row-major index).

    Args:
        spatial: ``(H, W)``.
        num_anchors: ``1 <= M <= H W``.
        dtype: floating dtype.

    Returns:
        ``[M, 2]`` anchor coordinates (centred pixel units).

    Example:
        >>> farthest_point_anchors((3, 3), 2).tolist()
        [[0.0, 0.0], [-1.0, -1.0]]
    """
    owner = "farthest_point_anchors"
    coords = grid_coordinates(spatial, torch.float64)
    num_positions = coords.shape[0]
    check_positive_int(num_anchors, name="num_anchors", owner=owner)
    if num_anchors > num_positions:
        raise ValueError(
            f"{owner}: num_anchors must be <= H*W = {num_positions}, got {num_anchors}"
        )
    chosen = [int(torch.argmin(coords.pow(2).sum(-1)))]
    min_dist = (coords - coords[chosen[0]]).pow(2).sum(-1)
    for _ in range(num_anchors - 1):
        nxt = int(torch.argmax(min_dist))
        chosen.append(nxt)
        min_dist = torch.minimum(min_dist, (coords - coords[nxt]).pow(2).sum(-1))
    return coords[chosen].to(dtype or torch.get_default_dtype())


class RBFBasis(nn.Module):
    r"""Gaussian RBF basis ``Psi[j, p] = exp(-omega^2 |p - z_j|^2)`` on a pixel grid.

    Args:
        spatial: ``(H, W)`` of the grid the basis lives on (the filter window for S-CONV,
            the feature map for S-FC).
        num_anchors: ``M``; ``None`` (default) puts ``ceil(H W / 2)`` anchors on a
            checkerboard (App. F.4), an int picks ``M`` positions by farthest-point sampling.
        omega: initial inverse lengthscale (1/pixels). Only ``omega^2`` matters;
            ``omega = 0`` makes every basis function constant.
        learnable_anchors: make the anchor locations ``z`` an ``nn.Parameter`` (``2 M``
            extra parameters); otherwise a buffer.
        learnable_omega: make ``omega`` an ``nn.Parameter`` (one extra parameter); otherwise a
            buffer.

    Attributes:
        anchor_locations: ``[M, 2]`` anchor coordinates ``z`` (parameter or buffer).
        omega: ``[]`` inverse lengthscale (parameter or buffer).
        positions: ``[P, 2]`` fixed grid coordinates (non-persistent buffer).

    Example:
        >>> basis = RBFBasis((3, 3))
        >>> basis.matrix().shape
        torch.Size([5, 9])
        >>> float(basis.matrix()[2, 4])  # the centre anchor at the centre pixel
        1.0
    """

    positions: torch.Tensor
    anchor_locations: torch.Tensor
    omega: torch.Tensor

    def __init__(
        self,
        spatial: tuple[int, int],
        num_anchors: int | None = None,
        *,
        omega: float = 1.0,
        learnable_anchors: bool = False,
        learnable_omega: bool = False,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.spatial = check_spatial(spatial, owner=owner)
        omega = check_finite_float(omega, name="omega", owner=owner)
        dtype = torch.get_default_dtype()
        if num_anchors is None:
            anchors = checkerboard_anchors(self.spatial, dtype)
        else:
            anchors = farthest_point_anchors(self.spatial, num_anchors, dtype)
        self.register_buffer("positions", grid_coordinates(self.spatial, dtype), persistent=False)
        if learnable_anchors:
            self.anchor_locations = nn.Parameter(anchors)
        else:
            self.register_buffer("anchor_locations", anchors)
        omega_tensor = torch.tensor(omega, dtype=dtype)
        if learnable_omega:
            self.omega = nn.Parameter(omega_tensor)
        else:
            self.register_buffer("omega", omega_tensor)

    @property
    def num_anchors(self) -> int:
        """``M``."""
        return self.anchor_locations.shape[0]

    @property
    def num_positions(self) -> int:
        """``P = H W``."""
        return self.positions.shape[0]

    def matrix(self) -> torch.Tensor:
        """The basis matrix ``Psi``: ``[M, P]`` with ``Psi[j, p] = exp(-omega^2 |p - z_j|^2)``."""
        z, p = self.anchor_locations, self.positions
        rows, cols = z[:, None, 0] - p[None, :, 0], z[:, None, 1] - p[None, :, 1]
        squared = rows.square() + cols.square()
        exponent = -self.omega.square() * squared
        # Far anchors would underflow to subnormal numbers (S-FC on 14x14 in float32: 1246 of
        # 19208 entries), which slow exp and every CPU matmul with Psi ~100x; they are zero in
        # all but name, so entries below e * finfo.tiny (~3e-38 in float32) are exact zeros.
        cutoff = math.log(torch.finfo(exponent.dtype).tiny) + 1.0
        return torch.where(exponent < cutoff, 0.0, torch.exp(exponent.clamp_min(cutoff)))

    @torch.no_grad()
    def mean_squared_norm(self) -> float:
        """``mean_p sum_j Psi[j, p]^2``: the variance gain from i.i.d. anchor values to weights."""
        return float(self.matrix().pow(2).sum(0).mean())

    def init_bound(self, fan_in: int) -> float:
        """Uniform bound for anchor values so interpolated weights match ``nn.Linear``'s scale.

        ``nn.Linear`` draws weights with variance ``1 / (3 fan_in)``; anchor values drawn from
        ``U(+-b)`` give weights of variance ``b^2 / 3 * mean_p sum_j Psi[j, p]^2`` (on average
        over positions), so ``b = 1 / sqrt(fan_in * mean_squared_norm())``.
        """
        gain = self.mean_squared_norm()
        if not gain > 0.0:
            raise ValueError(
                f"{self!r}: the basis underflows to zero (omega={float(self.omega)} too large "
                "for the anchor spacing); use a smaller omega"
            )
        return 1.0 / math.sqrt(fan_in * gain)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        learn_z = isinstance(self.anchor_locations, nn.Parameter)
        learn_w = isinstance(self.omega, nn.Parameter)
        return (
            f"spatial={self.spatial}, num_anchors={self.num_anchors}, "
            f"learnable_anchors={learn_z}, learnable_omega={learn_w}"
        )
