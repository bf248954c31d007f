"""The paper's GCONV (one conv shared over rotated copies): equivariance, oracles, the kinds."""

import pytest
import torch
import torch.nn.functional as F

from bayesym.backbones.layerwise import LayerwiseBackbone, LayerwiseBackboneConfig
from bayesym.groups import (
    D4_SUBGROUP_NAMES,
    d4_subgroup,
    dihedral4,
    expand_feature_map,
    image_transform,
    inclusion,
    restrict_feature_map,
    translation_group,
)
from bayesym.layers import (
    GroupConv2d,
    LiftingConv2d,
    PointwiseGroupConv2d,
    group_path_sum,
    layer_kind,
    make_layer,
)
from bayesym.testing import (
    assert_equivariant,
    assert_not_equivariant,
    image_action,
    regular_action,
    translation_action,
)

D4 = dihedral4()
C4 = d4_subgroup("C4")
GROUPS = [d4_subgroup(n) for n in D4_SUBGROUP_NAMES]
SIZE = 5


def _outside(group):
    inside = set(inclusion(group, D4).tolist())
    return [g for g in range(8) if g not in inside]


@pytest.mark.parametrize("group", GROUPS, ids=D4_SUBGROUP_NAMES)
def test_equivariant_to_every_group_element_and_every_shift(float64, group):
    layer = PointwiseGroupConv2d(2, 3, 3, group)
    y = torch.randn(2, 2, group.order, SIZE, SIZE)
    assert_equivariant(layer, group, y, regular_action(group), regular_action(group))
    shifts = translation_group(SIZE, SIZE)
    assert_equivariant(layer, shifts, y, translation_action(shifts), translation_action(shifts))


@pytest.mark.parametrize("group", GROUPS[:-1], ids=D4_SUBGROUP_NAMES[:-1])
def test_not_equivariant_to_d4_elements_outside_the_group(float64, group):
    # Read D4 feature maps as G feature maps, convolve, read back: D4 acts on both sides;
    # G's elements commute with the layer, every other element (for C4: the flips) must not.
    cosets = 8 // group.order
    layer = PointwiseGroupConv2d(2 * cosets, 3 * cosets, 3, group)

    def in_d4_layout(y):
        return expand_feature_map(layer(restrict_feature_map(y, D4, group)), D4, group)

    y = torch.randn(2, 2, 8, SIZE, SIZE)
    assert_equivariant(in_d4_layout, group, y, regular_action(D4), regular_action(D4))
    assert_not_equivariant(
        in_d4_layout, _outside(group), y, regular_action(D4), regular_action(D4), require="all"
    )


def test_matches_one_conv_per_copy_and_the_full_group_conv_restricted_to_the_identity(float64):
    layer = PointwiseGroupConv2d(2, 3, 3, D4, padding_mode="zeros")
    y = torch.randn(2, 2, 8, SIZE, SIZE)
    expected = torch.empty(2, 3, 8, SIZE, SIZE)
    for g in D4:
        kernel = image_transform(layer.weight, D4, g)  # T_g ψ
        expected[:, :, g] = F.conv2d(y[:, :, g], kernel, layer.bias, padding=1)
    torch.testing.assert_close(layer(y), expected, atol=1e-12, rtol=0)
    full = GroupConv2d(2, 3, 3, D4, padding_mode="zeros")
    with torch.no_grad():
        full.weight.zero_()
        full.weight[:, :, D4.identity] = layer.weight
        full.bias.copy_(layer.bias)
    torch.testing.assert_close(full(y), layer(y), atol=1e-12, rtol=0)


def _paper_copies(x, group):
    """The paper's lifting: copy g of the image is the image turned back by g."""
    return torch.stack([image_transform(x, group, group.inverse(g)) for g in group], dim=2)


def test_equals_the_papers_construction_one_conv_shared_over_the_rotated_copies(float64):
    """The paper's model: stack the turned copies of the image, apply the same ordinary
    convolutions to every copy (batched over copies), max-pool over the copies. bayesym's
    LiftingConv2d -> PointwiseGroupConv2d computes the same copies, each seen in its own frame
    (copy g turned by g), and the same invariant output."""
    lift, pointwise = LiftingConv2d(1, 3, 3, C4), PointwiseGroupConv2d(3, 2, 3, C4)
    x = torch.randn(2, 1, 6, 6)
    copies = _paper_copies(x, C4)  # [N, 1, 4, H, W]
    flat = copies.transpose(1, 2).reshape(-1, 1, 6, 6)  # copies in the batch
    h = torch.relu(F.conv2d(F.pad(flat, (1,) * 4, mode="circular"), lift.weight, lift.bias))
    paper = F.conv2d(F.pad(h, (1,) * 4, mode="circular"), pointwise.weight, pointwise.bias)
    paper = paper.reshape(2, 4, 2, 6, 6).transpose(1, 2)
    ours = pointwise(torch.relu(lift(x)))
    turned_back = torch.stack(
        [image_transform(ours[:, :, g], C4, C4.inverse(g)) for g in C4], dim=2
    )
    torch.testing.assert_close(turned_back, paper, atol=1e-12, rtol=0)
    # the backbone's "max" group pooling (grid mean, then max over copies) in either frame
    torch.testing.assert_close(
        ours.mean((-2, -1)).amax(2), paper.mean((-2, -1)).amax(2), atol=1e-12, rtol=0
    )


def test_parameter_counts_conv_to_gconv_is_sixteen_to_one_for_c4():
    def counts(kind):
        layer = make_layer(kind, 3, 5, spatial=(4, 4), group="C4", lifting=False)
        return {k: sum(p.numel() for p in path.parameters()) for k, path in layer.paths.items()}

    full, pointwise = counts("ffc+conv+gconv"), counts("ffc+conv+pgconv")
    assert pointwise["pgconv"] == 5 * 3 * 9 + 5  # C' C k² weights and the bias
    assert full["gconv"] == 5 * 3 * 4 * 9 + 5
    assert pointwise["conv"] == full["conv"] == (5 * 4) * (3 * 4) * 9 == 16 * 5 * 3 * 9
    lifting = make_layer("ffc+conv+pgconv", 1, 5, spatial=(4, 4), lifting=True)
    assert isinstance(lifting.paths["pgconv"], LiftingConv2d)
    assert layer_kind("ffc+conv+pgconv").group_pooling == "max"
    assert layer_kind("ffc+conv+gconv").group_pooling == "mean"


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_backbone_with_only_the_group_paths_is_c4_invariant_and_not_flip_invariant(
    float64, pooling
):
    config = LayerwiseBackboneConfig(
        "ffc+conv+pgconv", width=1, in_channels=1, input_size=(8, 8), group_pooling=pooling
    )
    net = LayerwiseBackbone(config).double()
    assert net.group_pooling == pooling
    x = torch.randn(3, 1, 8, 8)
    assert_not_equivariant(net, [1], x, image_action(C4), lambda t, g: t)
    with torch.no_grad():
        for _, layer in net.named_layers():
            for name in ("ffc", "conv"):
                for p in layer.paths[name].parameters():
                    p.zero_()
    assert_equivariant(net, C4, x, image_action(C4), lambda t, g: t)
    flips = [g for g in range(8) if g >= 4]
    assert_not_equivariant(net, flips, x, image_action(D4), lambda t, g: t, require="all")


def test_group_pooling_default_comes_from_the_kind_and_is_validated():
    assert (
        LayerwiseBackbone(
            LayerwiseBackboneConfig("ffc+conv+pgconv", width=1, in_channels=1, input_size=(8, 8))
        ).group_pooling
        == "max"
    )
    assert (
        LayerwiseBackbone(
            LayerwiseBackboneConfig("conv+gconv", width=1, in_channels=1, input_size=(8, 8))
        ).group_pooling
        == "mean"
    )
    with pytest.raises(ValueError, match="group_pooling must be None or one of"):
        LayerwiseBackboneConfig("ffc+conv+pgconv", group_pooling="sum")


def test_input_validation_names_layer_and_shapes():
    with pytest.raises(
        ValueError,
        match=r"PointwiseGroupConv2d\(C4\): expected input \[\?, 3, 4, \?, \?\], got \[2, 3, 8",
    ):
        PointwiseGroupConv2d(3, 2, 3, C4)(torch.randn(2, 3, 8, 5, 5))
    with pytest.raises(TypeError, match="dtype"):
        PointwiseGroupConv2d(1, 2, 3, C4)(torch.randn(2, 1, 4, 5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="odd"):
        PointwiseGroupConv2d(1, 2, 4, C4)
    with pytest.raises(ValueError, match="subgroup of D4"):
        PointwiseGroupConv2d(1, 2, 3, translation_group(3, 3))
    with pytest.raises(ValueError, match="including one of"):
        group_path_sum(["ffc", "conv"], 1, 2, spatial=(4, 4))
