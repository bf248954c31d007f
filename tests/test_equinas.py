"""The EquiNAS backbone: strict ones are invariant (train and eval), mixed ones restrictable."""

import pytest
import torch

from bayesym.backbones.equinas import EquiNASConfig, EquiNASNet
from bayesym.groups import (
    D4_SUBGROUP_NAMES,
    coset_index,
    d4_subgroup,
    dihedral4,
    inclusion,
    is_subgroup,
    translation_group,
)
from bayesym.layers.mixed import architecture_parameters
from bayesym.testing import (
    assert_equivariant,
    assert_not_equivariant,
    image_action,
    translation_action,
    trivial_action,
)

D4 = dihedral4()
SMALL = EquiNASConfig(width=1, depth=4, num_classes=3)
SIZE = 9  # odd: exercises the 3x3 symmetric pooling windows (9 -> 5 -> 3)


def _run_train_steps(net, size=SIZE, steps=3):
    net.train()
    for _ in range(steps):
        net(0.5 + torch.randn(6, net.config.in_channels, size, size))
    return net


@pytest.mark.parametrize("name", D4_SUBGROUP_NAMES)
def test_strict_backbone_invariant_in_train_and_eval(float64, name):
    group = d4_subgroup(name)
    net = _run_train_steps(EquiNASNet(SMALL, group))
    assert not torch.allclose(net.blocks[0].norm.running_mean, torch.zeros(1))
    x = torch.randn(6, 1, SIZE, SIZE)
    for training in (True, False):
        net.train(training)
        assert_equivariant(net, group, x, image_action(D4), trivial_action())
        outside = [g for g in range(8) if g not in set(inclusion(group, D4).tolist())]
        if outside:
            assert_not_equivariant(net, outside, x, image_action(D4), trivial_action())


def test_regression_head_without_group_pooling_is_not_invariant(float64):
    """Reference code flattened the group axis into the head instead of pooling it."""
    net = _run_train_steps(EquiNASNet(SMALL, "C4")).eval()
    c4 = d4_subgroup("C4")
    readout = torch.nn.Linear(net.blocks[-1].conv.out_channels * 4, 3)

    def without_group_pooling(x):
        for block in net.blocks:
            x = block(x)
        return readout(x.mean(dim=(-2, -1)).flatten(1))  # group axis kept as features

    x = torch.randn(4, 1, SIZE, SIZE)
    assert_equivariant(net, c4, x, image_action(c4), trivial_action())
    assert_not_equivariant(without_group_pooling, [1, 2, 3], x, image_action(c4), trivial_action(),
                           require="all")  # fmt: skip


def test_translation_invariance_follows_the_pooling_grid(float64):
    x = torch.randn(3, 1, 8, 8)
    shifts = translation_group(8, 8)
    no_pool = EquiNASNet(EquiNASConfig(width=1, depth=3, pool_every=0), "C4").eval()
    assert_equivariant(no_pool, shifts, x, translation_action(shifts), trivial_action())
    pooled = EquiNASNet(EquiNASConfig(width=1, depth=3, pool_every=2), "C4").eval()
    even = [shifts.element(2 * i, 2 * j) for i in range(4) for j in range(4)]
    assert_equivariant(pooled, even, x, translation_action(shifts), trivial_action())
    odd = [shifts.element(1, 0), shifts.element(0, 1), shifts.element(1, 1)]
    assert_not_equivariant(pooled, odd, x, translation_action(shifts), trivial_action(),
                           require="all")  # fmt: skip


def test_channel_widths_match_once_expanded():
    expanded = set()
    for name in D4_SUBGROUP_NAMES:
        net = EquiNASNet(EquiNASConfig(width=2, depth=4), name)
        group = d4_subgroup(name)
        widths = [b.conv.out_channels * group.order for b in net.blocks]
        assert widths == [16, 16, 32, 32]
        expanded.add(tuple(widths))
        assert [b.pool is not None for b in net.blocks] == [False, True, False, False]
    assert len(expanded) == 1


def test_paper_scale_shapes_float32():
    net = EquiNASNet(EquiNASConfig(width=1), "D4")
    assert len(net.blocks) == 8
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert net(torch.randn(2, 1, 16, 16)).dtype == torch.float32
    counts = {
        name: sum(p.numel() for p in EquiNASNet(EquiNASConfig(width=1), name).blocks.parameters())
        for name in ("D4", "C4", "C1")
    }
    # Smaller groups: [D4:K] times the channels on both sides, |K| filters per pair.
    assert counts["C4"] > counts["D4"] and counts["C1"] > counts["C4"]


def test_mixed_backbone_restricted_mixtures_are_invariant(float64):
    config = EquiNASConfig(width=1, depth=3, layer_type="mixed")
    net = EquiNASNet(config)
    assert [g.name for g in net.groups] == ["D4"] * 3
    assert len(list(architecture_parameters(net))) == 3
    with torch.no_grad():
        for alpha in architecture_parameters(net):
            alpha.normal_()
    _run_train_steps(net)
    x = torch.randn(4, 1, SIZE, SIZE)
    c2 = d4_subgroup("C2")
    assert_not_equivariant(net.eval(), c2, x, image_action(D4), trivial_action())
    for block in net.blocks:
        block.conv = block.conv.restrict([k for k in block.conv.components if is_subgroup(c2, k)])
    for training in (True, False):
        net.train(training)
        assert_equivariant(net, c2, x, image_action(D4), trivial_action())


def test_mixed_backbone_with_chosen_components():
    config = EquiNASConfig(width=1, depth=2, layer_type="mixed")
    net = EquiNASNet(config, ["D4", "C4"], components=["C1", "C4", "D4"])
    assert [k.name for k in net.blocks[0].conv.components] == ["C1", "C4", "D4"]
    assert [k.name for k in net.blocks[1].conv.components] == ["C1", "C4"]
    assert net.blocks[1].conv.in_channels == 1 * coset_index(D4, d4_subgroup("C4"))
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_validation():
    with pytest.raises(ValueError, match="block 1 \\(D4\\) is not a subgroup of block 0 \\(C4\\)"):
        EquiNASNet(EquiNASConfig(width=1, depth=2), ["C4", "D4"])
    with pytest.raises(ValueError, match="got 1 groups for depth 2"):
        EquiNASNet(EquiNASConfig(width=1, depth=2), ["C4"])
    with pytest.raises(KeyError, match="valid names"):
        EquiNASNet(EquiNASConfig(width=1, depth=2), "C3")
    with pytest.raises(ValueError, match="width"):
        EquiNASConfig(width=0)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        EquiNASConfig(kernel_size=4)
    with pytest.raises(ValueError, match="layer_type"):
        EquiNASConfig(layer_type="soft")
    with pytest.raises(ValueError, match="components are only used"):
        EquiNASNet(EquiNASConfig(width=1, depth=2), components=["C4"])
    with pytest.raises(ValueError, match=r"expected images \[N, 1, H, W\]"):
        EquiNASNet(EquiNASConfig(width=1, depth=2))(torch.randn(2, 3, 8, 8))


def test_devices_float32():
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        net = _run_train_steps(EquiNASNet(SMALL, "D4").to(device), steps=0).eval()
        x = torch.randn(4, 1, SIZE, SIZE, device=device)
        assert net(x).device.type == device
        assert_equivariant(net, D4, x, image_action(D4), trivial_action())
