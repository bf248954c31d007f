"""RBF anchor basis of S-CONV / S-FC: formula, default anchor count, layouts, parameters."""

import math

import pytest
import torch

from bayesym.layers import RBFBasis, default_num_anchors
from bayesym.layers.anchors import checkerboard_anchors, farthest_point_anchors, grid_coordinates


@pytest.mark.parametrize("spatial", [(1, 1), (3, 3), (4, 4), (5, 3), (7, 2), (32, 32)])
def test_default_is_half_the_positions_rounded_up_on_a_checkerboard(spatial):
    h, w = spatial
    assert default_num_anchors(spatial) == math.ceil(h * w / 2)
    anchors = checkerboard_anchors(spatial)
    assert anchors.shape == (math.ceil(h * w / 2), 2)
    assert RBFBasis(spatial).num_anchors == math.ceil(h * w / 2)
    # anchors are grid points, pairwise distinct, and never horizontally/vertically adjacent
    coords = grid_coordinates(spatial)
    assert all((coords == a).all(-1).any() for a in anchors)
    d = torch.cdist(anchors, anchors)
    assert (d + torch.eye(len(anchors)) * 10).min() >= (
        math.sqrt(2) - 1e-9 if len(anchors) > 1 else 0
    )


def test_basis_matrix_is_the_papers_formula(float64):
    basis = RBFBasis((3, 4), 5, omega=0.8, learnable_anchors=True)
    with torch.no_grad():
        basis.anchor_locations.add_(0.3 * torch.randn(5, 2))  # off-grid anchors
    psi = basis.matrix()
    coords = grid_coordinates((3, 4))
    for j in range(5):
        for p in range(12):
            expected = math.exp(
                -(0.8**2) * float(((coords[p] - basis.anchor_locations[j].detach()) ** 2).sum())
            )
            assert abs(psi[j, p].item() - expected) < 1e-12


def test_coordinates_are_centred_pixel_units():
    torch.testing.assert_close(
        grid_coordinates((2, 3)),
        torch.tensor([[-0.5, -1.0], [-0.5, 0.0], [-0.5, 1.0], [0.5, -1.0], [0.5, 0.0], [0.5, 1.0]]),
    )


def test_farthest_point_anchors_are_distinct_spread_grid_points():
    anchors = farthest_point_anchors((5, 5), 5)
    assert anchors[0].tolist() == [0.0, 0.0]  # starts at the centre
    assert sorted(map(tuple, anchors[1:].tolist())) == [(-2, -2), (-2, 2), (2, -2), (2, 2)]
    assert torch.unique(farthest_point_anchors((4, 4), 16), dim=0).shape == (16, 2)


def test_learnable_options_make_separately_named_parameters():
    fixed = RBFBasis((3, 3))
    assert list(fixed.parameters()) == []
    assert {"anchor_locations", "omega"} <= set(dict(fixed.named_buffers()))
    learn = RBFBasis((3, 3), learnable_anchors=True, learnable_omega=True)
    assert set(dict(learn.named_parameters())) == {"anchor_locations", "omega"}
    # gradients reach both
    learn.matrix().sum().backward()
    assert learn.anchor_locations.grad is not None and learn.omega.grad is not None


def test_basis_follows_module_dtype():
    basis = RBFBasis((3, 3)).to(torch.float64)
    assert basis.matrix().dtype == torch.float64


def test_too_large_omega_is_reported():
    basis = RBFBasis((3, 3), 1, omega=1e3, learnable_anchors=True)
    assert basis.init_bound(4) > 0  # anchors on grid points never underflow
    with torch.no_grad():
        basis.anchor_locations.add_(0.5)  # off the grid
    with pytest.raises(ValueError, match="underflows"):
        basis.init_bound(4)
