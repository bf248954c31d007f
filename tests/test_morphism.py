"""Relaxation morphism: function-identical for every subgroup pair, parameters grow by [G:H]."""

import pytest
import torch

from bayesym.backbones.equinas import EquiNASConfig, EquiNASNet
from bayesym.groups import (
    coset_index,
    d4_lattice,
    d4_subgroup,
    restrict_feature_map,
    translation_group,
)
from bayesym.layers.group_conv import GroupConv2d, LiftingConv2d
from bayesym.layers.group_norm import GroupBatchNorm
from bayesym.layers.morphism import adapt_input_layout, relax, relax_pooled_linear
from bayesym.testing import assert_equivariant, image_action, regular_action

LATTICE = d4_lattice()
PAIRS = LATTICE.pairs()
PAIR_IDS = [f"{g.name}->{h.name}" for g, h in PAIRS]
TRIPLES = [(g, h, k) for g, h in PAIRS for k in LATTICE.subgroups(h)]
TRIPLE_IDS = [f"{g.name}->{h.name}->{k.name}" for g, h, k in TRIPLES]
SIZE = 5
TOL = {"atol": 1e-10, "rtol": 0}


def _count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("group", "sub"), PAIRS, ids=PAIR_IDS)
def test_relaxed_lifting_and_group_conv_are_function_identical(float64, group, sub):
    copies = coset_index(group, sub)
    lift, gconv = LiftingConv2d(2, 3, 3, group), GroupConv2d(2, 3, 3, group)
    x, y = torch.randn(2, 2, SIZE, SIZE), torch.randn(2, 2, group.order, SIZE, SIZE)
    relaxed_lift, relaxed_gconv = relax(lift, sub), relax(gconv, sub)
    torch.testing.assert_close(relaxed_lift(x), restrict_feature_map(lift(x), group, sub), **TOL)
    torch.testing.assert_close(
        relaxed_gconv(restrict_feature_map(y, group, sub)),
        restrict_feature_map(gconv(y), group, sub),
        **TOL,
    )
    assert relaxed_lift.weight.numel() == copies * lift.weight.numel()
    assert relaxed_gconv.weight.numel() == copies * gconv.weight.numel()
    assert _count(relaxed_gconv) == copies * _count(gconv)
    assert relaxed_gconv.group is sub and relaxed_gconv.out_channels == 3 * copies
    # The relaxed layer is a genuine H-layer: H-equivariant on its own.
    assert_equivariant(relaxed_lift, sub, x, image_action(sub), regular_action(sub))


@pytest.mark.parametrize(("group", "sub"), [(d4_subgroup("D4"), d4_subgroup("C2"))], ids=["D4->C2"])
def test_relaxed_norm_identical_in_train_and_eval(float64, group, sub):
    norm = GroupBatchNorm(3, group)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    for _ in range(3):
        norm(2.0 + torch.randn(4, 3, 8, SIZE, SIZE))
    relaxed = relax(norm, sub)
    assert relaxed.shared_copies == 4 and relaxed.num_channels == 12
    y = torch.randn(4, 3, 8, SIZE, SIZE)
    for training in (True, False):
        norm.train(training)
        relaxed.train(training)
        torch.testing.assert_close(
            relaxed(restrict_feature_map(y, group, sub)),
            restrict_feature_map(norm(y), group, sub),
            **TOL,
        )
    # A second relaxation keeps sharing statistics over all copies.
    twice = relax(relaxed, d4_subgroup("C1"))
    assert twice.shared_copies == 8 and twice.running_mean.shape == (3,)


def test_relax_validation():
    c4, d1 = d4_subgroup("C4"), d4_subgroup("D1")
    with pytest.raises(ValueError, match="'D1' is not a subgroup of the layer's group 'C4'"):
        relax(GroupConv2d(1, 1, 3, c4), d1)
    with pytest.raises(TypeError, match="Linear"):
        relax(torch.nn.Linear(2, 2), c4)
    with pytest.raises(ValueError, match="different roots"):
        relax(GroupConv2d(1, 1, 3, c4), translation_group(2, 2))


def test_adapt_input_layout_absorbs_permutation_and_right_translation(float64):
    c4 = d4_subgroup("C4")
    layer = GroupConv2d(3, 2, 3, c4)
    sigma = torch.tensor([2, 0, 1])
    shift = torch.tensor([1, 0, 3])  # right translations h -> h·h_a
    b = torch.randn(2, 3, 4, SIZE, SIZE)
    table = c4.cayley_table
    columns = table[:, shift].T  # [a, h] -> h·h_a
    a = b[:, sigma[:, None], columns]  # A[a, h] = B[σ(a), h·h_a]
    provided = torch.arange(12).reshape(3, 4)
    expected = provided[sigma[:, None], columns]
    adapted = adapt_input_layout(layer, expected, provided)
    torch.testing.assert_close(adapted(b), layer(a), **TOL)
    with pytest.raises(ValueError, match="more than a channel permutation"):
        adapt_input_layout(layer, provided[:, [0, 2, 1, 3]], provided)


def test_relax_pooled_linear(float64):
    linear = torch.nn.Linear(3, 4)
    relaxed = relax_pooled_linear(linear, 2)
    per_coset = torch.randn(5, 3, 2)  # mean over each coset
    torch.testing.assert_close(relaxed(per_coset.flatten(1)), linear(per_coset.mean(-1)), **TOL)


def _trained(net, size):
    net.train()
    for _ in range(2):
        net(1.0 + torch.randn(4, 1, size, size))
    return net


@pytest.mark.parametrize(("group", "sub"), PAIRS, ids=PAIR_IDS)
def test_network_relaxed_block_by_block_keeps_logits(float64, group, sub):
    size = 7
    net = _trained(EquiNASNet(EquiNASConfig(width=1, depth=3), group), size)
    x = torch.randn(4, 1, size, size)
    for training in (False, True):
        current = net.train(training)
        reference = net(x)
        for block in (2, 1, 0):  # last first: groups stay non-increasing
            before = _count(current.blocks[block].conv)
            current = current.relax_layer(block, sub).train(training)
            torch.testing.assert_close(current(x), reference, **TOL)
            assert current.blocks[block].conv.weight.numel() == before * coset_index(group, sub)
        assert [g.name for g in current.groups] == [sub.name] * 3


@pytest.mark.parametrize(("group", "mid", "low"), TRIPLES, ids=TRIPLE_IDS)
def test_network_relaxed_along_a_chain_keeps_logits(float64, group, mid, low):
    net = EquiNASNet(EquiNASConfig(width=1, depth=3, pool_every=0), group).eval()
    x = torch.randn(3, 1, SIZE, SIZE)
    reference = net(x)
    child = net.relax_layer(2, low).relax_layer(1, mid).relax_layer(0, mid)
    torch.testing.assert_close(child(x), reference, **TOL)
    assert [g.name for g in child.groups] == [mid.name, mid.name, low.name]
    assert [g.name for g in net.groups] == [group.name] * 3  # parent untouched


def test_relaxations_respect_non_increasing_groups():
    net = EquiNASNet(EquiNASConfig(width=1, depth=3), "D4")
    moves = [(i, h.name) for i, h in net.relaxations()]
    assert moves == [(2, "C1"), (2, "C2"), (2, "C4"), (2, "D1"), (2, "D2")]
    child = net.relax_layer(2, "C2")
    assert [(i, h.name) for i, h in child.relaxations()] == [
        (1, "C2"), (1, "C4"), (1, "D2"), (2, "C1"),
    ]  # fmt: skip


def test_relax_layer_validation():
    net = EquiNASNet(EquiNASConfig(width=1, depth=3), "D4")
    with pytest.raises(ValueError, match="block 2 has group D4, which is not a subgroup of C4"):
        net.relax_layer(1, "C4")
    with pytest.raises(ValueError, match=r"block must be in 0\.\.2"):
        net.relax_layer(3, "C4")
    with pytest.raises(ValueError, match="D1 is not a subgroup of block 2's group C4"):
        net.relax_layer(2, "C4").relax_layer(2, "D1")
    max_pooled = EquiNASNet(EquiNASConfig(width=1, depth=2, group_pooling="max"), "D4")
    with pytest.raises(ValueError, match="group_pooling='mean'"):
        max_pooled.relax_layer(1, "C4")
    mixed = EquiNASNet(EquiNASConfig(width=1, depth=2, layer_type="mixed"))
    with pytest.raises(TypeError, match="layer_type='fixed'"):
        mixed.relax_layer(1, "C4")
    assert mixed.relaxations() == ()
