"""Circular 'same' padding: the fast concatenation path equals periodic index arithmetic."""

import pytest
import torch

from bayesym.layers.conv import pad_same


@pytest.mark.parametrize(
    ("shape", "pad"),
    [((2, 3, 5, 5), 1), ((2, 3, 5, 4), 2), ((1, 1, 1, 1), 1), ((2, 3, 2, 3), 2), ((1, 2, 3, 3), 5)],
    ids=["5x5-p1", "5x4-p2", "1x1-p1", "2x3-p2-wraps", "3x3-p5-wraps-twice"],
)
def test_circular_pad_is_periodic_extension(shape, pad):
    x = torch.randn(shape)
    rows = torch.arange(-pad, shape[2] + pad) % shape[2]
    cols = torch.arange(-pad, shape[3] + pad) % shape[3]
    assert torch.equal(pad_same(x, pad, "circular"), x[..., rows, :][..., cols])
