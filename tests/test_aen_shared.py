"""AEN parameter-sharing FC layer: one parameter per orbit, equivariant to exactly its group."""

import pytest
import torch

from bayesym.groups.permutation import grid_group
from bayesym.groups.pixel_transforms import TRANSFORM_NAMES, apply_transform
from bayesym.layers import LayerSymmetry
from bayesym.layers.shared import OrbitSharedLinear, PeriodicSharingWarning


def image_act(name, x, spatial):
    """The data-side action: the named transform of the shared table on flattened images."""
    return apply_transform(name, x.view(*x.shape[:-1], *spatial)).flatten(-2)


@pytest.mark.parametrize("name", TRANSFORM_NAMES)
def test_layer_for_each_named_transform_matches_the_data_transform_regression(float64, name):
    """Regression: the reference code's transform indices for data and architecture disagree.

    The layer built for a name must commute with the SAME name applied to data by
    :func:`apply_transform` (one table for both).
    """
    if name in ("htranslate", "vtranslate"):  # order 4 on the input, 6 on the output grid
        with pytest.warns(PeriodicSharingWarning, match="order 4 on the 16 inputs but 6"):
            layer = OrbitSharedLinear.from_transforms([name], (4, 4), out_spatial=(6, 6))
    else:
        layer = OrbitSharedLinear.from_transforms([name], (4, 4), out_spatial=(6, 6))
    x = torch.randn(3, 16)
    lhs = layer(image_act(name, x, (4, 4)))
    rhs = image_act(name, layer(x), (6, 6))
    torch.testing.assert_close(lhs, rhs, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "selected,outside",
    [
        (("rot90",), ("hflip", "htranslate", "scramble_rotate")),
        (("hflip",), ("vflip", "rot90", "scramble_horizontal")),
        (("htranslate",), ("vtranslate", "hflip")),
        (("scramble_left_vertical",), ("scramble_vertical", "scramble_right_vertical")),
    ],
    ids=lambda names: "+".join(names),
)
def test_equivariant_to_selected_transforms_and_not_to_others(float64, selected, outside):
    layer = OrbitSharedLinear.from_transforms(selected, (4, 4), out_spatial=(4, 4))
    x = torch.randn(4, 16)
    y = layer(x)
    for name in selected:
        torch.testing.assert_close(layer(image_act(name, x, (4, 4))), image_act(name, y, (4, 4)))
    for name in outside:
        error = (layer(image_act(name, x, (4, 4))) - image_act(name, y, (4, 4))).abs().max()
        assert error > 1e-3, name


def test_one_free_parameter_per_orbit_and_shared_bias(float64):
    layer = OrbitSharedLinear.from_transforms(["rot90"], (4, 4), out_spatial=(2, 2))
    assert layer.orbit_weights.numel() == 16 * 4 // 4  # rot90 has no fixed pixels on even grids
    assert layer.orbit_bias.numel() == 1  # the four 2x2 units form one rotation orbit
    weight = layer.expanded_weight()
    assert weight.shape == (4, 16)
    assert torch.unique(weight).numel() == layer.orbit_weights.numel()
    assert torch.unique(layer.expanded_bias()).numel() == 1
    assert layer.symmetry == LayerSymmetry(pixel_permutations=("rot90",))
    # gradients flow to the free parameters only, summed over each orbit
    x = torch.randn(3, 16)
    layer(x).sum().backward()
    expected = torch.zeros_like(layer.orbit_weights).index_add_(
        0, layer.orbit_index.flatten(), (torch.ones(3, 4).T @ x).flatten()
    )
    torch.testing.assert_close(layer.orbit_weights.grad, expected)


def test_trivial_output_gives_an_invariant_layer(float64):
    layer = OrbitSharedLinear.from_transforms("Aug4", (4, 4), out_features=3)
    x = torch.randn(2, 16)
    for name in layer.in_group.names:
        torch.testing.assert_close(layer(image_act(name, x, (4, 4))), layer(x))


def test_no_transform_is_a_plain_linear_layer():
    layer = OrbitSharedLinear.from_transforms([], (3, 3), out_spatial=(2, 2))
    assert layer.orbit_weights.numel() == 36 and layer.orbit_bias.numel() == 4
    assert layer.symmetry.is_trivial


def test_errors_name_the_layer_and_shapes():
    layer = OrbitSharedLinear.from_transforms(["hflip"], (2, 2), out_features=2)
    with pytest.raises(
        ValueError, match=r"OrbitSharedLinear\(in_features=4.*expected input \[N, 4\], got \[3, 5\]"
    ):
        layer(torch.randn(3, 5))
    with pytest.raises(ValueError, match="exactly one of out_spatial"):
        OrbitSharedLinear.from_transforms(["hflip"], (2, 2))
    with pytest.raises(TypeError, match="must be PermutationGroups"):
        OrbitSharedLinear(grid_group(["hflip"], (2, 2)), "hflip")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_follows_dtype_and_device(dtype):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    layer = OrbitSharedLinear.from_transforms(["vflip"], (4, 4), out_spatial=(2, 2))
    layer = layer.to(device=device, dtype=dtype)
    y = layer(torch.randn(2, 16, dtype=dtype, device=device))
    assert y.dtype == dtype and y.device.type == device
