"""Relaxed layers with a GCONV path (F-FC + CONV + GCONV): layouts and the equivariance ladder."""

import pytest
import torch

from bayesym.backbones import LayerwiseBackbone, LayerwiseBackboneConfig
from bayesym.groups import d4_subgroup, translation_group
from bayesym.layers import (
    GroupConv2d,
    LayerSymmetry,
    LiftingConv2d,
    conv_plus_gconv,
    ffc_plus_conv_plus_gconv,
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
    trivial_action,
)


def zero_paths(layer, names):
    with torch.no_grad():
        for name in names:
            for p in layer.paths[name].parameters():
                p.zero_()


@pytest.mark.parametrize("group_name", ["C4", "D4", "D1"])
def test_layouts_and_parameter_counts(group_name):
    g = d4_subgroup(group_name).order
    c_in, c_out, x, s = 2, 3, 4, 3
    layer = ffc_plus_conv_plus_gconv(c_in, c_out, spatial=(x, x), group=group_name, bias=False)
    assert list(layer.paths) == ["ffc", "conv", "gconv"]
    assert type(layer.paths["gconv"]) is GroupConv2d
    assert layer(torch.randn(5, c_in, g, x, x)).shape == (5, c_out, g, x, x)
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in layer.paths.items()}
    assert counts == {
        "ffc": 2 * (c_out * g) * (c_in * g) * x * x,
        "conv": (c_out * g) * (c_in * g) * s * s,
        "gconv": c_out * c_in * g * s * s,
    }
    lifting = ffc_plus_conv_plus_gconv(c_in, c_out, spatial=(x, x), group=group_name, lifting=True)
    assert type(lifting.paths["gconv"]) is LiftingConv2d
    assert lifting(torch.randn(5, c_in, x, x)).shape == (5, c_out, g, x, x)
    assert (
        lifting.paths["ffc"].in_channels == c_in and lifting.paths["ffc"].out_channels == c_out * g
    )


@pytest.mark.parametrize("lifting", [False, True], ids=["group-to-group", "lifting"])
def test_equivariance_ladder_fc_conv_gconv(float64, lifting):
    """All paths: nothing; FC off: shifts; FC and CONV off: shifts and C4, exactly."""
    c4 = d4_subgroup("C4")
    layer = ffc_plus_conv_plus_gconv(2, 2, spatial=(4, 4), group=c4, lifting=lifting)
    x = torch.randn(2, 2, 4, 4) if lifting else torch.randn(2, 2, 4, 4, 4)
    act_in = image_action(c4) if lifting else regular_action(c4)
    act_out = regular_action(c4)
    shifts = translation_group(4, 4)
    shift = translation_action(shifts)
    assert layer.symmetry.is_trivial
    assert_not_equivariant(layer, range(1, 16), x, shift, shift, require="all")
    assert_not_equivariant(layer, [1, 2, 3], x, act_in, act_out, require="all")

    zero_paths(layer, ["ffc"])
    assert layer.strict_symmetry() == LayerSymmetry(translations=True)
    assert_equivariant(layer, shifts, x, shift, shift)
    assert_not_equivariant(layer, [1, 2, 3], x, act_in, act_out, require="all")

    zero_paths(layer, ["conv"])
    assert layer.strict_symmetry() == LayerSymmetry(translations=True, point_group="C4")
    assert_equivariant(layer, shifts, x, shift, shift)
    assert_equivariant(layer, c4, x, act_in, act_out)


def test_conv_plus_gconv_is_the_equinas_rpp_layer(float64):
    d4 = d4_subgroup("D4")
    layer = conv_plus_gconv(1, 2, spatial=(4, 4), group="D4")
    assert list(layer.paths) == ["conv", "gconv"]
    x = torch.randn(2, 1, 8, 4, 4)
    assert_not_equivariant(layer, range(1, 8), x, regular_action(d4), regular_action(d4))
    zero_paths(layer, ["conv"])
    assert_equivariant(layer, d4, x, regular_action(d4), regular_action(d4))


def test_group_kinds_are_registered_with_their_layout():
    for kind in (
        "gconv",
        "conv+gconv",
        "ffc+conv+gconv",
        "pgconv",
        "conv+pgconv",
        "ffc+conv+pgconv",
    ):
        assert layer_kind(kind).group_axis
        first = make_layer(kind, 1, 2, spatial=(4, 4), group="C2", lifting=True)
        assert first(torch.randn(3, 1, 4, 4)).shape == (3, 2, 2, 4, 4)
    assert not layer_kind("ffc+conv").group_axis
    with pytest.raises(ValueError, match=r"including one of \('gconv', 'pgconv'\)"):
        group_path_sum(["ffc", "conv"], 1, 1, spatial=(2, 2))
    with pytest.raises(KeyError, match="unknown D4 subgroup 'C3'"):
        make_layer("gconv", 1, 1, spatial=(2, 2), group="C3")


@pytest.mark.parametrize("relaxed_on", [False, True], ids=["relaxation-off", "relaxation-on"])
def test_gconv_backbone_invariance(float64, relaxed_on):
    c4 = d4_subgroup("C4")
    config = LayerwiseBackboneConfig(
        "ffc+conv+gconv",
        width=1,
        in_channels=1,
        num_classes=3,
        input_size=(8, 8),
        layer_options={"group": "C4"},
    )
    net = LayerwiseBackbone(config)
    x = torch.randn(2, 1, 8, 8)
    shifts = translation_group(8, 8)
    if relaxed_on:
        assert_not_equivariant(net, [1, 2, 3], x, image_action(c4), trivial_action())
        assert_not_equivariant(net, [1, 9, 27], x, translation_action(shifts), trivial_action())
        return
    for _, layer in net.named_layers():
        zero_paths(layer, ["ffc", "conv"])
    assert_equivariant(net, c4, x, image_action(c4), trivial_action())
    assert_equivariant(net, shifts, x, translation_action(shifts), trivial_action())
