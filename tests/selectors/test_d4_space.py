"""The 'd4' search space: exact symmetries of its networks, its relaxed and residual networks."""

import pytest
import torch

from bayesym.backbones.equinas_paths import EquiNASPathNet
from bayesym.groups import d4_subgroup
from bayesym.layers.subgroup_paths import SubgroupPath, subgroup_path_sum
from bayesym.selectors import SPACES, D4SubgroupSpace, DataShape, make_space
from bayesym.selectors.spaces.d4 import SUBGROUP_ORDER, SUBGROUP_WORDS
from bayesym.testing import (
    assert_equivariant,
    assert_not_equivariant,
    image_action,
    regular_action,
    trivial_action,
)

D4 = d4_subgroup("D4")
SHAPE = DataShape(1, 8, 8, 10)


def outside(name):
    """D4 indices of the elements not in the subgroup ``name``."""
    members = set(d4_subgroup(name).root_embedding)
    return [g for g in range(8) if g not in members]


def invariant_to_exactly(net, name, x):
    """``net``'s logits are invariant to every element of ``name`` and to none outside it."""
    act = image_action(D4)
    assert_equivariant(net, d4_subgroup(name), x, act, trivial_action())
    if outside(name):
        assert_not_equivariant(net, outside(name), x, act, trivial_action(), require="all")


def test_the_space_is_registered_with_the_six_static_baselines():
    assert SPACES["d4"] is D4SubgroupSpace
    space = make_space("d4", width=1, depth=4)
    assert space.baselines() == ("C1", "D1", "C2", "D2", "C4", "D4")
    assert set(SUBGROUP_WORDS) == set(SUBGROUP_ORDER)


@pytest.mark.parametrize("norm", ["none", "group_batch"])
@pytest.mark.parametrize("baseline", SUBGROUP_ORDER)
def test_every_baseline_is_invariant_to_its_group_and_no_larger_one(float64, norm, baseline):
    space = D4SubgroupSpace(width=1, depth=4, norm=norm)
    net = space.build_baseline(baseline, SHAPE)
    x = torch.randn(4, 1, 8, 8)
    for mode in (net.train, net.eval):  # batch statistics and running statistics
        mode()
        invariant_to_exactly(net, baseline, x)
    assert [c.choice for c in space.describe(net)] == [baseline] * 4
    assert {c.symmetry for c in space.describe(net)} == {f"translations x {baseline}"}


@pytest.mark.parametrize("norm", ["none", "group_batch"])
def test_prior_baselines_start_as_the_larger_groups_function(float64, norm):
    space = D4SubgroupSpace(width=1, depth=4, norm=norm, prior_baselines=("C1-prior-D4",))
    assert space.baselines()[-1] == "C1-prior-D4"
    torch.manual_seed(3)
    prior = space.build_baseline("C1-prior-D4", SHAPE).eval()
    torch.manual_seed(3)
    d4 = space.build_baseline("D4", SHAPE).eval()
    c1 = space.build_baseline("C1", SHAPE)
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(prior(x), d4(x), atol=1e-10, rtol=1e-10)
    assert [c.choice for c in space.describe(prior)] == ["C1"] * 4
    assert [p.shape for p in prior.parameters()] == [p.shape for p in c1.parameters()]
    with torch.no_grad():  # once its weights move, nothing but translations is left
        for p in prior.parameters():
            p.add_(0.1 * torch.randn_like(p))
    assert_not_equivariant(prior, range(1, 8), x, image_action(D4), trivial_action(), require="all")
    with pytest.raises(ValueError, match="D4 is not a subgroup of C4"):
        D4SubgroupSpace(prior_baselines=("D4-prior-C4",))
    with pytest.raises(ValueError, match="named 'H-prior-G'"):
        D4SubgroupSpace(prior_baselines=("C1<D4",))


def test_norm_free_baselines_have_no_batch_norm_and_a_usable_scale():
    net = D4SubgroupSpace(width=1, depth=8).build_baseline("D4", DataShape(1, 16, 16, 10))
    kinds = {type(m).__name__ for m in net.modules()}
    assert not kinds & {"GroupBatchNorm", "BatchNorm1d"}
    logits = net.eval()(torch.randn(16, 1, 16, 16))
    assert 0.1 < float(logits.detach().square().mean()) < 10  # unit-moment initialisation


def test_per_block_groups_are_described_block_by_block(float64):
    space = D4SubgroupSpace(width=1, depth=4)
    net = space.network(["D4", "D2", "D1", "C1"], SHAPE)
    choices = space.describe(net)
    assert [c.layer for c in choices] == [f"blocks.{b}.conv" for b in range(4)]
    assert [c.choice for c in choices] == ["D4", "D2", "D1", "C1"]
    invariant_to_exactly(net.eval(), "C1", torch.randn(3, 1, 8, 8))
    with pytest.raises(ValueError, match="non-increasing"):
        space.network(["C4", "D4", "D4", "D4"], SHAPE)


def test_norm_free_relaxation_morphism_keeps_the_function(float64):
    space = D4SubgroupSpace(width=1, depth=4)
    net = space.network("D4", SHAPE)
    x = torch.randn(3, 1, 8, 8)
    for block, group in [(3, "C2"), (2, "D2"), (1, "D2"), (3, "C1")]:
        moves = {(b, g.name) for b, g in net.relaxations()}
        assert (block, group) in moves
        child = net.relax_layer(block, group)
        torch.testing.assert_close(child(x), net(x), atol=1e-12, rtol=0)
        net = child


def test_mixed_network_is_described_by_its_mixture_weights():
    space = D4SubgroupSpace(width=1, depth=3)
    net = space.mixed_network(SHAPE)
    with torch.no_grad():
        net.blocks[1].conv.architecture_logits[3] = 2.0
    choices = space.describe(net)
    assert set(choices[0].scores) == set(SUBGROUP_ORDER)
    assert choices[1].choice == net.blocks[1].conv.components[3].name
    assert sum(choices[1].scores.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("name", SUBGROUP_ORDER)
def test_a_subgroup_path_has_exactly_its_subgroups_symmetry(float64, name):
    x = torch.randn(2, 1, 8, 6, 6)
    act = regular_action(D4)
    path = SubgroupPath(name, 1, 2)
    assert_equivariant(path, d4_subgroup(name), x, act, act)
    if outside(name):
        assert_not_equivariant(path, outside(name), x, act, act, require="all")
    lifting = SubgroupPath(name, 1, 2, lifting=True)
    assert_equivariant(lifting, d4_subgroup(name), x[:, :, 0], image_action(D4), act)
    k = d4_subgroup(name).order
    assert path.conv.weight.numel() == (8 // k) ** 2 * k * 2 * 9


def test_the_bias_sits_in_the_largest_subgroups_path():
    layer = subgroup_path_sum(["C1", "C4", "D2"], 1, 1)
    assert [n for n, p in layer.paths.items() if p.conv.bias is not None] == ["C4"]


def switch_off(net, keep):
    """Zero every path of every block except those named in ``keep``."""
    with torch.no_grad():
        for block in net.blocks:
            for name, path in block.layer.paths.items():
                if name not in keep:
                    for p in path.parameters():
                        p.zero_()


def test_relaxed_network_is_d4_invariant_exactly_when_only_the_d4_path_is_on(float64):
    space = D4SubgroupSpace(width=1, depth=4)
    x = torch.randn(3, 1, 8, 8)
    net = space.relaxed_network(SHAPE).eval()
    assert isinstance(net, EquiNASPathNet) and net.subgroups == SUBGROUP_ORDER
    assert_not_equivariant(net, range(1, 8), x, image_action(D4), trivial_action(), require="all")
    for keep in ("C4", "D2", "D1"):
        partial = space.relaxed_network(SHAPE).eval()
        switch_off(partial, {keep, "D4"})
        invariant_to_exactly(partial, keep, x)
    switch_off(net, {"D4"})
    invariant_to_exactly(net, "D4", x)
    assert {c.symmetry for c in space.describe(net)} == {"translations x D4"}


def test_residual_network_has_a_d4_and_an_unconstrained_path(float64):
    space = D4SubgroupSpace(width=1, depth=3)
    net, eq, neq = space.residual_network(SHAPE)
    assert (eq, neq) == ("D4", "C1")
    assert all(list(b.layer.paths) == ["D4", "C1"] for b in net.blocks)
    switch_off(net, {"D4"})
    invariant_to_exactly(net.eval(), "D4", torch.randn(2, 1, 8, 8))


def test_bad_settings_are_refused_in_one_line():
    with pytest.raises(ValueError, match="norm must be one of"):
        D4SubgroupSpace(norm="batch")
    with pytest.raises(ValueError, match=r"unknown subgroup.*valid: C1, D1"):
        D4SubgroupSpace(static_groups=("C3",))
    with pytest.raises(ValueError, match="norm='none'"):
        D4SubgroupSpace(norm="group_batch").relaxed_network(SHAPE)
    with pytest.raises(ValueError, match="norm='none'"):
        D4SubgroupSpace(norm="group_batch").residual_network(SHAPE)
    with pytest.raises(ValueError, match="square"):
        D4SubgroupSpace().build_baseline("D4", DataShape(1, 8, 6, 10))
    with pytest.raises(ValueError, match=r"unknown baseline 'C3'.*valid: C1, D1"):
        D4SubgroupSpace().build_baseline("C3", SHAPE)
