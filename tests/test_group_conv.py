"""Lifting and group convolutions: exact equivariance, brute-force oracle, validation."""

import pytest
import torch
import torch.nn.functional as F

from bayesym.groups import (
    D4_SUBGROUP_NAMES,
    d4_index,
    d4_subgroup,
    dihedral4,
    expand_feature_map,
    image_transform,
    inclusion,
    restrict_feature_map,
    translation_group,
)
from bayesym.layers.group_conv import GroupConv2d, LiftingConv2d
from bayesym.layers.group_pool import GroupPool
from bayesym.testing import (
    assert_equivariant,
    assert_not_equivariant,
    image_action,
    regular_action,
    translation_action,
)

D4 = dihedral4()
GROUPS = [d4_subgroup(n) for n in D4_SUBGROUP_NAMES]
SIZE = 5


def _outside(group):
    inside = set(inclusion(group, D4).tolist())
    return [g for g in range(8) if g not in inside]


def _feature_map(group, channels=2, size=SIZE):
    return torch.randn(2, channels, group.order, size, size)


@pytest.mark.parametrize("group", GROUPS, ids=D4_SUBGROUP_NAMES)
def test_lifting_conv_equivariant_to_group_and_every_shift(float64, group):
    layer = LiftingConv2d(2, 3, 3, group)
    x = torch.randn(2, 2, SIZE, SIZE)
    assert_equivariant(layer, group, x, image_action(group), regular_action(group))
    shifts = translation_group(SIZE, SIZE)
    assert_equivariant(layer, shifts, x, translation_action(shifts), translation_action(shifts))


@pytest.mark.parametrize("group", GROUPS, ids=D4_SUBGROUP_NAMES)
def test_group_conv_equivariant_to_group_and_every_shift(float64, group):
    layer = GroupConv2d(2, 3, 3, group)
    y = _feature_map(group)
    assert_equivariant(layer, group, y, regular_action(group), regular_action(group))
    shifts = translation_group(SIZE, SIZE)
    assert_equivariant(layer, shifts, y, translation_action(shifts), translation_action(shifts))


@pytest.mark.parametrize("group", GROUPS[:-1], ids=D4_SUBGROUP_NAMES[:-1])
def test_lifting_conv_not_invariant_to_d4_elements_outside_group(float64, group):
    # 5 x 5 filters: a C4-symmetric 3 x 3 filter is automatically D4-symmetric.
    invariant = torch.nn.Sequential(LiftingConv2d(2, 3, 5, group), GroupPool("mean"))
    x = torch.randn(2, 2, SIZE, SIZE)
    assert_equivariant(invariant, group, x, image_action(D4), image_action(D4))
    outside = _outside(group)
    assert_not_equivariant(invariant, outside, x, image_action(D4), image_action(D4), require="all")


@pytest.mark.parametrize("group", GROUPS[:-1], ids=D4_SUBGROUP_NAMES[:-1])
def test_group_conv_not_equivariant_to_d4_elements_outside_group(float64, group):
    # Read D4-feature maps as G-feature maps, convolve, read back: D4 then acts on both
    # sides; G-elements commute, the others must not.
    layer = GroupConv2d(2 * 8 // group.order, 3 * 8 // group.order, 3, group)

    def in_d4_layout(y):
        return expand_feature_map(layer(restrict_feature_map(y, D4, group)), D4, group)

    y = _feature_map(D4)
    assert_equivariant(in_d4_layout, group, y, regular_action(D4), regular_action(D4))
    outside = _outside(group)
    assert_not_equivariant(
        in_d4_layout, outside, y, regular_action(D4), regular_action(D4), require="all"
    )


@pytest.mark.parametrize("group", [d4_subgroup("C4"), D4], ids=["C4", "D4"])
def test_group_conv_matches_brute_force_sum(float64, group):
    layer = GroupConv2d(2, 3, 3, group)
    y = _feature_map(group)
    expected = torch.zeros(2, 3, group.order, SIZE, SIZE)
    padded = F.pad(y.flatten(1, 2), (1, 1, 1, 1), mode="circular").unflatten(1, (2, group.order))
    for r in group:
        for h in group:
            u = group.product(group.inverse(r), h)
            kernel = image_transform(layer.weight[:, :, u], group, r)  # [C_out, C_in, k, k]
            expected[:, :, r] += F.conv2d(padded[:, :, h], kernel)
        expected[:, :, r] += layer.bias[None, :, None, None]
    torch.testing.assert_close(layer(y), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate"])
def test_other_padding_modes_keep_group_equivariance_but_not_shifts(float64, padding_mode):
    lift = LiftingConv2d(1, 2, 3, D4, padding_mode=padding_mode)
    gconv = GroupConv2d(2, 2, 3, D4, padding_mode=padding_mode)
    net = torch.nn.Sequential(lift, gconv)
    x = torch.randn(2, 1, SIZE, SIZE)
    assert_equivariant(net, D4, x, image_action(D4), regular_action(D4))
    shifts = translation_group(SIZE, SIZE)
    assert_not_equivariant(
        net, [shifts.element(1, 0), shifts.element(2, 3)], x,
        translation_action(shifts), translation_action(shifts),
    )  # fmt: skip


def test_regression_lifting_and_group_conv_share_reflection_axis(float64):
    """Reference code flipped lifting and group-conv filters about different axes."""
    d1 = d4_subgroup("D1")
    lift, gconv = LiftingConv2d(1, 2, 3, d1), GroupConv2d(2, 2, 3, d1)
    flip = d4_index(1, 0)
    psi = torch.randn(2, 1, 3, 3)
    with torch.no_grad():
        lift.weight.copy_(psi)
    # Both layers flip filters about the row axis (dim -2), the same F as the image action.
    assert torch.equal(lift.expanded_kernel()[1::2], psi.flip(-2))
    f_index = inclusion(d1, D4).tolist().index(flip)
    w = gconv.expanded_kernel().reshape(2, 2, 2, 2, 3, 3)
    assert torch.equal(w[:, f_index, :, f_index], gconv.weight[:, :, 0].flip(-2))
    x = torch.randn(2, 1, SIZE, SIZE)
    net = torch.nn.Sequential(lift, gconv, GroupPool())
    assert_equivariant(net, d1, x, image_action(d1), image_action(d1))
    # Negative control: a group conv flipping about the column axis breaks the network.
    k = torch.arange(9).reshape(3, 3)
    wrong_spatial = torch.stack([k, k.flip(-1)])
    relative = d1.cayley_table[d1.inverses]
    gconv.expansion_index = relative[:, :, None, None] * 9 + wrong_spatial[:, None]
    assert_not_equivariant(net, [f_index], x, image_action(d1), image_action(d1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_dtypes_and_devices(dtype):
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        layer = GroupConv2d(2, 2, 3, D4, device=device, dtype=dtype)
        lift = LiftingConv2d(1, 2, 3, D4, device=device, dtype=dtype)
        x = torch.randn(2, 1, SIZE, SIZE, device=device, dtype=dtype)
        net = torch.nn.Sequential(lift, layer)
        assert net(x).dtype == dtype and net(x).device.type == device
        assert_equivariant(net, D4, x, image_action(D4), regular_action(D4))
        moved = GroupConv2d(2, 2, 3, D4).to(device=device, dtype=dtype)
        assert moved.expanded_kernel().device.type == device


def test_parameter_counts():
    c4 = d4_subgroup("C4")
    assert sum(p.numel() for p in LiftingConv2d(3, 5, 3, c4).parameters()) == 5 * 3 * 9 + 5
    assert (
        sum(p.numel() for p in GroupConv2d(3, 5, 3, c4, bias=False).parameters()) == 5 * 3 * 4 * 9
    )


def test_input_validation_names_layer_and_shapes():
    c4 = d4_subgroup("C4")
    with pytest.raises(
        ValueError,
        match=r"GroupConv2d\(C4\): expected input \[\?, 3, 4, \?, \?\], got \[2, 3, 8, 5, 5\]",
    ):
        GroupConv2d(3, 2, 3, c4)(torch.randn(2, 3, 8, 5, 5))
    with pytest.raises(ValueError, match=r"LiftingConv2d\(C4\): expected input \[\?, 1, \?, \?\]"):
        LiftingConv2d(1, 2, 3, c4)(torch.randn(2, 1, 4, 5, 5))
    with pytest.raises(TypeError, match="dtype"):
        LiftingConv2d(1, 2, 3, c4)(torch.randn(2, 1, 5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="odd"):
        GroupConv2d(1, 2, 4, c4)
    with pytest.raises(ValueError, match="padding_mode"):
        GroupConv2d(1, 2, 3, c4, padding_mode="mirror")
    with pytest.raises(ValueError, match="subgroup of D4"):
        GroupConv2d(1, 2, 3, translation_group(3, 3))
    with pytest.raises(ValueError, match="out_channels"):
        LiftingConv2d(1, 0, 3, c4)
