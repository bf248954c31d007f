"""The conv input factor from shifted pixel products equals the unfolded patch covariance."""

import pytest
import torch
import torch.nn.functional as F

from curvature import patch_covariance
from curvature.adapters.conv_covariance import _route, conv_patch_covariance

SETTINGS = [
    # (channels, H, W, kernel, dilation); route in the comment
    (3, 5, 6, (3, 3), (1, 1)),  # rows
    (1, 6, 6, (3, 3), (1, 1)),  # rows, one channel
    (2, 8, 7, (3, 2), (2, 1)),  # rows, vertical dilation
    (5, 6, 6, (5, 5), (1, 1)),  # rows
    (3, 3, 4, (3, 4), (1, 1)),  # rows, a single output position
    (3, 4, 9, (1, 3), (1, 1)),  # rows, one kernel row
    (2, 6, 6, (3, 1), (1, 1)),  # rows, one kernel column
    (8, 6, 7, (3, 3), (1, 1)),  # offsets
    (4, 7, 5, (2, 3), (1, 2)),  # offsets, horizontal dilation
    (3, 9, 8, (3, 3), (3, 2)),  # offsets
    (4, 4, 9, (1, 3), (1, 3)),  # offsets, one kernel row
    (3, 3, 5, (3, 3), (1, 2)),  # offsets, a single output position
    (2, 6, 7, (3, 3), (1, 2)),  # unfold: two channels with horizontal dilation
    (6, 5, 5, (1, 1), (1, 1)),  # unfold: 1x1 kernel
]


def unfolded(x, kernel, dilation):
    return patch_covariance(F.unfold(x, kernel, dilation=dilation))


@pytest.mark.parametrize("setting", SETTINGS, ids=str)
def test_equals_the_unfolded_patch_covariance_in_float64(float64, setting):
    c, h, w, kernel, dilation = setting
    x = torch.randn(4, c, h, w)
    got = conv_patch_covariance(x, kernel, dilation)
    expected = unfolded(x, kernel, dilation)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(got, got.T)  # exactly symmetric by construction


def test_every_route_is_exercised_by_the_settings():
    routes = {_route(c, *kernel, dilation[1]) for c, _, _, kernel, dilation in SETTINGS}
    assert routes == {"rows", "offsets", "unfold"}


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
