"""Adaptive polyphase subsampling (APS): per-sample phase, exact shift equivariance."""

import itertools

import pytest
import torch
from torch import nn

from bayesym.groups import translation_group
from bayesym.layers import PolyphaseSubsample2d, SpatialConv2d
from bayesym.testing import assert_equivariant, translation_action, trivial_action


def brute_force_aps(x, stride=2, norm="linf"):
    out = []
    for sample in x:
        best, best_score = None, None
        for i, j in itertools.product(range(stride), range(stride)):
            component = sample[..., i::stride, j::stride]
            score = component.abs().max() if norm == "linf" else component.pow(2).sum()
            if best_score is None or score > best_score:  # first maximum wins
                best, best_score = component, score
        out.append(best)
    return torch.stack(out)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("stride", [2, 3])
def test_aps_keeps_each_samples_largest_norm_component(float64, norm, stride):
    x = torch.randn(5, 3, 6, 6)
    aps = PolyphaseSubsample2d(stride, norm=norm)
    torch.testing.assert_close(aps(x), brute_force_aps(x, stride, norm), rtol=0, atol=0)


def test_aps_shift_rule_holds_for_every_cyclic_shift(float64):
    """APS(roll(x, (a, b))) = roll(APS(x), (floor((a + i) / 2), floor((b + j) / 2)))."""
    aps = PolyphaseSubsample2d()
    x = torch.randn(4, 2, 8, 6)
    y = aps(x)
    phases = aps.select_phases(x)
    for a, b in itertools.product(range(8), range(6)):
        y_shifted = aps(torch.roll(x, (a, b), (-2, -1)))
        for n in range(4):
            i, j = phases[n].tolist()
            expected = torch.roll(y[n], ((a + i) // 2, (b + j) // 2), (-2, -1))
            torch.testing.assert_close(y_shifted[n], expected, rtol=0, atol=0)


def _batchwide_reference_aps(x):
    """What the public reference code does: ONE phase for the whole batch (the bug)."""
    scores = torch.stack(
        [x[..., i::2, j::2].abs().amax(dim=(1, 2, 3)).sum() for i in range(2) for j in range(2)]
    )
    k = int(scores.argmax())
    return x[..., k // 2 :: 2, k % 2 :: 2]


def test_aps_phase_is_chosen_per_sample_not_per_batch_regression(float64):
    """Regression: the reference code picks one phase for the whole batch.

    Shifting one sample by one pixel must only shift that sample's subsampled output; with a
    batch-wide phase the other sample's output changes too and shift equivariance breaks.
    """
    x = torch.zeros(2, 1, 4, 4)
    x[0, 0, 0, 0] = 3.0  # sample 0 prefers phase (0, 0)
    x[1, 0, 1, 1] = 2.0  # sample 1 prefers phase (1, 1)
    x = x + 0.01 * torch.randn_like(x)
    aps = PolyphaseSubsample2d()
    assert aps.select_phases(x).tolist() == [[0, 0], [1, 1]]
    # batch independence: each sample as if alone
    for n in range(2):
        torch.testing.assert_close(aps(x)[n : n + 1], aps(x[n : n + 1]), rtol=0, atol=0)
    # global max pool after APS is invariant to shifting any single sample
    pooled = aps(x).amax(dim=(-2, -1))
    for shift in itertools.product(range(4), range(4)):
        moved = x.clone()
        moved[1] = torch.roll(x[1], shift, (-2, -1))
        torch.testing.assert_close(aps(moved).amax(dim=(-2, -1)), pooled, rtol=0, atol=0)
    # the batch-wide rule fails exactly this
    assert not torch.equal(_batchwide_reference_aps(x)[1], aps(x)[1])
    reference_pooled = _batchwide_reference_aps(x).amax(dim=(-2, -1))
    changed = False
    for shift in itertools.product(range(4), range(4)):
        moved = x.clone()
        moved[1] = torch.roll(x[1], shift, (-2, -1))
        changed |= not torch.equal(
            _batchwide_reference_aps(moved).amax(dim=(-2, -1)), reference_pooled
        )
    assert changed


def test_conv_aps_stack_with_global_pooling_is_invariant_to_every_cyclic_shift(float64):
    net = nn.Sequential(
        SpatialConv2d(2, 4),
        PolyphaseSubsample2d(),
        nn.ReLU(),
        SpatialConv2d(4, 4),
        PolyphaseSubsample2d(),
        nn.ReLU(),
        SpatialConv2d(4, 3),
    )
    pooled = lambda x: net(x).mean(dim=(-2, -1))  # noqa: E731
    x = torch.randn(3, 2, 8, 8)
    shifts = translation_group(8, 8)
    assert_equivariant(pooled, shifts, x, translation_action(shifts), trivial_action())
    # without APS (fixed phase (0, 0)) the same stack is not invariant
    fixed = lambda x: net[:1](x)[..., ::2, ::2].mean(dim=(-2, -1))  # noqa: E731
    diffs = [(fixed(torch.roll(x, (0, 1), (-2, -1))) - fixed(x)).abs().max()]
    assert max(diffs) > 1e-3


def test_group_feature_maps_use_one_phase_for_all_group_channels(float64):
    y = torch.randn(3, 2, 4, 6, 6)
    out = PolyphaseSubsample2d()(y)
    assert out.shape == (3, 2, 4, 3, 3)
    torch.testing.assert_close(out, brute_force_aps(y), rtol=0, atol=0)


def test_aps_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"spatial size \(5, 6\).*not divisible by the stride 2"):
        PolyphaseSubsample2d()(torch.randn(1, 1, 5, 6))
    with pytest.raises(ValueError, match="norm must be one of"):
        PolyphaseSubsample2d(norm="l1")
    with pytest.raises(ValueError, match="stride must be a positive int"):
        PolyphaseSubsample2d(0)
