"""The conv input factor from shifted pixel products equals the unfolded patch covariance."""

import pytest
import torch
import torch.nn.functional as F

from curvature.adapters import patch_covariance
from curvature.adapters.conv_covariance import _route, conv_patch_covariance

SETTINGS = [
    # (channels, H, W, kernel, dilation); route in the comment
    (3, 5, 6, (3, 3), (1, 1)),  # rows
    (1, 6, 6, (3, 3), (1, 1)),  # rows, one channel
    (2, 8, 7, (3, 2), (2, 1)),  # rows, vertical dilation
    (5, 6, 6, (5, 5), (1, 1)),  # rows
    (3, 3, 4, (3, 4), (1, 1)),  # unfold: a single output position
    (3, 4, 9, (1, 3), (1, 1)),  # rows, one kernel row
    (2, 6, 6, (3, 1), (1, 1)),  # rows, one kernel column
    (8, 6, 7, (3, 3), (1, 1)),  # offsets
    (4, 7, 5, (2, 3), (1, 2)),  # offsets, horizontal dilation
    (3, 9, 8, (3, 3), (3, 2)),  # offsets
    (4, 4, 9, (1, 3), (1, 3)),  # offsets, one kernel row
    (3, 3, 5, (3, 3), (1, 2)),  # unfold: a single output position
    (8, 4, 4, (3, 3), (1, 1)),  # unfold: 4 output positions, 8 channels
    (8, 5, 4, (3, 3), (1, 1)),  # offsets: 6 output positions
    (2, 6, 7, (3, 3), (1, 2)),  # unfold: two channels with horizontal dilation
    (6, 5, 5, (1, 1), (1, 1)),  # unfold: 1x1 kernel
]


def unfolded(x, kernel, dilation):
    return patch_covariance(F.unfold(x, kernel, dilation=dilation))


@pytest.mark.parametrize("route", [None, "rows", "offsets", "unfold"])
@pytest.mark.parametrize("setting", SETTINGS, ids=str)
def test_equals_the_unfolded_patch_covariance_in_float64(float64, setting, route):
    """The chosen route (None) and every route forced, on every geometry it applies to."""
    c, h, w, kernel, dilation = setting
    if route == "rows" and dilation[1] != 1:
        pytest.skip("the rows route needs horizontal dilation 1")
    x = torch.randn(4, c, h, w)
    got = conv_patch_covariance(x, kernel, dilation, route=route)
    expected = unfolded(x, kernel, dilation)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(got, got.T)  # exactly symmetric by construction


def positions(h, w, kernel, dilation):
    return (h - dilation[0] * (kernel[0] - 1)) * (w - dilation[1] * (kernel[1] - 1))


def test_every_route_is_chosen_for_some_setting():
    routes = {
        _route(c, *kernel, dilation[1], positions(h, w, kernel, dilation))
        for c, h, w, kernel, dilation in SETTINGS
    }
    assert routes == {"rows", "offsets", "unfold"}


def test_few_output_positions_take_the_unfolded_route():
    assert _route(32, 3, 3, 1, 1) == _route(3, 3, 3, 1, 1) == "unfold"
    assert _route(32, 3, 3, 1, 4) == "unfold" and _route(4, 3, 3, 1, 4) == "rows"
    assert _route(32, 3, 3, 1, 9) == "offsets"


def test_unknown_or_inapplicable_route_is_refused():
    x = torch.randn(2, 3, 6, 6)
    with pytest.raises(ValueError, match="route must be"):
        conv_patch_covariance(x, (3, 3), route="diagonal")
    with pytest.raises(ValueError, match="horizontal dilation 1"):
        conv_patch_covariance(x, (3, 3), (1, 2), route="rows")


@pytest.mark.parametrize("channels", [2, 8])
def test_float32_relative_error_is_at_round_off_level(channels):
    x = torch.randn(64, channels, 12, 12)
    got = conv_patch_covariance(x, (3, 3))
    expected = unfolded(x.double(), (3, 3), (1, 1))
    assert got.dtype == torch.float32
    assert ((got.double() - expected).abs().max() / expected.abs().max()) < 1e-5


def test_a_non_contiguous_input_gives_the_same_factor(float64):
    x = torch.randn(3, 9, 9, 2).permute(0, 3, 1, 2)  # [3, 2, 9, 9], channels-last strides
    assert torch.allclose(
        conv_patch_covariance(x, (3, 3)), unfolded(x, (3, 3), (1, 1)), rtol=1e-12, atol=1e-12
    )


def test_kernel_larger_than_the_padded_input_is_refused():
    with pytest.raises(ValueError, match=r"does not fit the padded input \(2, 3, 4, 4\)"):
        conv_patch_covariance(torch.randn(2, 3, 4, 4), (3, 3), (2, 2))


@pytest.mark.parametrize(("d", "t"), [(9, 1), (36, 16), (36, 64), (144, 200), (300, 4)])
def test_patch_covariance_equals_the_sum_of_outer_products(float64, d, t):
    """Both computations: the GEMM on transposed rows (t < 64 or d > 256), the batched one."""
    x = torch.randn(5, d, t)
    expected = torch.einsum("bdt,bet->de", x, x)
    torch.testing.assert_close(patch_covariance(x), expected, rtol=1e-12, atol=1e-12)
