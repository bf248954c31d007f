"""Group pooling, D4-symmetric downsampling and equivariant batch normalisation."""

import pytest
import torch
import torch.nn.functional as F

from bayesym.groups import D4_SUBGROUP_NAMES, d4_subgroup, dihedral4, translation_group
from bayesym.layers.group_norm import GroupBatchNorm
from bayesym.layers.group_pool import GroupPool, SymmetricAvgPool2d
from bayesym.testing import (
    assert_equivariant,
    assert_not_equivariant,
    image_action,
    regular_action,
    translation_action,
)

D4 = dihedral4()


@pytest.mark.parametrize("mode", ["mean", "max"])
@pytest.mark.parametrize("name", D4_SUBGROUP_NAMES)
def test_group_pool_gives_invariant_channels(float64, name, mode):
    group = d4_subgroup(name)
    y = torch.randn(2, 3, group.order, 5, 5)
    assert_equivariant(GroupPool(mode), group, y, regular_action(group), image_action(group))
    expected = y.mean(2) if mode == "mean" else y.max(2).values
    assert torch.equal(GroupPool(mode)(y), expected)


def test_group_pool_validation():
    with pytest.raises(ValueError, match="mode"):
        GroupPool("sum")
    with pytest.raises(ValueError, match=r"GroupPool: expected .* got \[2, 3, 5, 5\]"):
        GroupPool()(torch.randn(2, 3, 5, 5))


@pytest.mark.parametrize("size", [6, 7], ids=["even", "odd"])
def test_symmetric_avg_pool_commutes_with_d4(float64, size):
    y = torch.randn(2, 3, 8, size, size)
    pool = SymmetricAvgPool2d()
    assert pool(y).shape[-1] == (size + 1) // 2
    assert_equivariant(pool, D4, y, regular_action(D4), regular_action(D4))


def test_regression_plain_stride2_pool_on_odd_size_breaks_rotation(float64):
    """A 2x2/stride-2 pool on an odd grid drops the last row/column: not D4-symmetric."""
    x = torch.randn(2, 3, 7, 7)
    naive = lambda t: F.avg_pool2d(t, 2, 2)  # noqa: E731
    assert_not_equivariant(naive, D4, x, image_action(D4), image_action(D4))


def test_symmetric_avg_pool_shift_equivariance_only_for_even_shifts(float64):
    shifts, half = translation_group(8, 8), translation_group(4, 4)
    x = torch.randn(2, 3, 8, 8)
    pool = SymmetricAvgPool2d()

    def act_in(t, g):
        dy, dx = half.shift(g)
        return t.roll((2 * dy, 2 * dx), (-2, -1))

    assert_equivariant(pool, half, x, act_in, translation_action(half))
    # Odd shifts change which pixels are averaged together (an invariant readout shows it).
    odd = [shifts.element(1, 0), shifts.element(0, 1), shifts.element(3, 3)]
    energy = lambda t: pool(t).square().sum((-2, -1))  # noqa: E731
    invariant = lambda t, g: t  # noqa: E731
    assert_not_equivariant(energy, odd, x, translation_action(shifts), invariant, require="all")


def _train_a_little(norm, group, steps=3):
    norm.train()
    for _ in range(steps):
        norm(3.0 + 2.0 * torch.randn(4, norm.num_channels, group.order, 5, 5))


@pytest.mark.parametrize("name", ["C4", "D1", "D4"])
def test_group_batch_norm_equivariant_in_train_and_eval(float64, name):
    group = d4_subgroup(name)
    norm = GroupBatchNorm(3, group)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(3) + 0.5)
        norm.bias.copy_(torch.randn(3))
    y = torch.randn(4, 3, group.order, 5, 5)
    assert_equivariant(norm, group, y, regular_action(group), regular_action(group))
    _train_a_little(norm, group)
    assert not torch.allclose(norm.running_mean, torch.zeros(3))
    norm.eval()
    assert_equivariant(norm, group, y, regular_action(group), regular_action(group))


def test_regression_per_group_channel_batchnorm_breaks_eval_mode(float64):
    """Reference code normalised [N, C·|G|, H, W] with BatchNorm2d: broken after training."""
    group = d4_subgroup("C4")
    per_channel = torch.nn.BatchNorm2d(3 * group.order)

    def per_group_channel(y):
        return per_channel(y.flatten(1, 2)).unflatten(1, (3, group.order))

    y = torch.randn(4, 3, group.order, 5, 5)
    assert_equivariant(per_group_channel, group, y, regular_action(group), regular_action(group))
    per_channel.train()
    for _ in range(3):  # group channels see different statistics
        per_channel(torch.randn(4, 3 * group.order, 5, 5) * torch.arange(1.0, 13.0)[:, None, None])
    per_channel.eval()
    rotations = [1, 2, 3]
    assert_not_equivariant(
        per_group_channel, rotations, y, regular_action(group), regular_action(group),
        require="all",
    )  # fmt: skip


def test_shared_copies_statistics_match_manual_computation(float64):
    group = d4_subgroup("C2")
    norm = GroupBatchNorm(6, group, shared_copies=3, affine=False, momentum=1.0)
    y = torch.randn(4, 6, 2, 3, 3)
    out = norm(y)
    base = y.reshape(4, 2, 3 * 2, 3, 3)
    mean = base.mean(dim=(0, 2, 3, 4))
    var = base.var(dim=(0, 2, 3, 4), unbiased=False)
    expected = (base - mean[None, :, None, None, None]) / torch.sqrt(
        var[None, :, None, None, None] + norm.eps
    )
    torch.testing.assert_close(out, expected.reshape(y.shape), atol=1e-12, rtol=0)
    torch.testing.assert_close(norm.running_mean, mean, atol=1e-12, rtol=0)


def test_group_batch_norm_validation():
    c4 = d4_subgroup("C4")
    with pytest.raises(ValueError, match="multiple of shared_copies"):
        GroupBatchNorm(5, c4, shared_copies=2)
    with pytest.raises(ValueError, match=r"GroupBatchNorm\(C4\): expected input \[N, 3, 4, H, W\]"):
        GroupBatchNorm(3, c4)(torch.randn(2, 3, 8, 5, 5))


def test_float32_and_device():
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        norm = GroupBatchNorm(3, D4, device=device)
        y = torch.randn(2, 3, 8, 5, 5, device=device)
        assert norm(y).device.type == device and norm(y).dtype == torch.float32
        assert_equivariant(norm, D4, y, regular_action(D4), regular_action(D4))
