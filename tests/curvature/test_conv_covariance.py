"""The conv input factor from shifted pixel products equals the unfolded patch covariance."""

import pytest
import torch
import torch.nn.functional as F

from curvature import patch_covariance
from curvature.adapters.conv_covariance import _use_shifted_products, conv_patch_covariance

SETTINGS = [
    # (channels, H, W, kernel, dilation)
    (3, 5, 6, (3, 3), (1, 1)),
    (4, 7, 5, (2, 3), (1, 2)),
    (3, 8, 7, (3, 2), (2, 1)),
    (5, 6, 6, (5, 5), (1, 1)),
    (3, 9, 8, (3, 3), (3, 2)),
    (3, 3, 4, (3, 4), (1, 1)),  # a single output position
    (4, 4, 9, (1, 3), (1, 3)),  # one kernel row
    (1, 6, 6, (3, 3), (1, 1)),  # below the channel threshold: unfold route
    (6, 5, 5, (1, 1), (1, 1)),  # 1x1 kernel: unfold route
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


def test_both_routes_are_exercised_by_the_settings():
    routes = {_use_shifted_products(c, *kernel) for c, _, _, kernel, _ in SETTINGS}
    assert routes == {True, False}


def test_float32_relative_error_is_at_round_off_level():
    x = torch.randn(64, 8, 12, 12)
    got = conv_patch_covariance(x, (3, 3))
    expected = unfolded(x.double(), (3, 3), (1, 1))
    assert got.dtype == torch.float32
    assert ((got.double() - expected).abs().max() / expected.abs().max()) < 1e-5


def test_kernel_larger_than_the_padded_input_is_refused():
    with pytest.raises(ValueError, match=r"does not fit the padded input \(2, 3, 4, 4\)"):
        conv_patch_covariance(torch.randn(2, 3, 4, 4), (3, 3), (2, 2))
