"""Relaxed layers as sums of named paths: layouts, symmetry metadata, exactness at zero."""

import pytest
import torch
from torch import nn

from bayesym.groups import translation_group
from bayesym.layers import (
    FactoredLinear,
    LayerSymmetry,
    PathSum,
    SpatialConv2d,
    conv_plus_fc,
    fc_plus_conv,
    ffc_plus_conv,
    sfc_plus_sconv,
)
from bayesym.testing import assert_equivariant, assert_not_equivariant, translation_action

CONSTRUCTORS = {  # constructor, relaxation paths, strict paths, path order
    "fc+conv": (fc_plus_conv, ["fc"], ["conv"], ["fc", "conv"]),
    "conv+fc": (conv_plus_fc, ["fc"], ["conv"], ["conv", "fc"]),
    "ffc+conv": (ffc_plus_conv, ["ffc"], ["conv"], ["ffc", "conv"]),
    "sfc+sconv": (sfc_plus_sconv, ["sfc"], ["sconv"], ["sfc", "sconv"]),
}


def shift_check(layer, x, *, equivariant):
    shifts = translation_group(*x.shape[-2:])
    act = translation_action(shifts)
    if equivariant:
        assert_equivariant(layer, shifts, x, act, act)
    else:
        assert_not_equivariant(layer, range(1, shifts.order), x, act, act, require="all")


@pytest.mark.parametrize("kind", list(CONSTRUCTORS))
def test_relaxed_layer_is_exactly_equivariant_iff_its_relaxation_paths_are_zero(float64, kind):
    make, relaxed, strict, order = CONSTRUCTORS[kind]
    layer = make(2, 3, spatial=(4, 4))
    assert list(layer.paths) == order
    assert layer.symmetry.is_trivial
    assert all(layer.path_symmetries[name].translations for name in strict)
    x = torch.randn(2, 2, 4, 4)
    shift_check(layer, x, equivariant=False)
    with torch.no_grad():
        for name in relaxed:
            for p in layer.paths[name].parameters():
                p.zero_()
    assert layer.active_paths() == strict
    assert layer.strict_symmetry() == LayerSymmetry(translations=True)
    shift_check(layer, x, equivariant=True)


@pytest.mark.parametrize("kind", list(CONSTRUCTORS))
def test_relaxed_layer_is_the_sum_of_its_paths(float64, kind):
    layer = CONSTRUCTORS[kind][0](2, 3, spatial=(4, 4))
    x = torch.randn(2, 2, 4, 4)
    outputs = layer.path_outputs(x)
    torch.testing.assert_close(layer(x), sum(outputs.values()), rtol=0, atol=1e-12)


def test_bias_sits_in_the_equivariant_path():
    for make in (fc_plus_conv, ffc_plus_conv, sfc_plus_sconv):
        layer = make(2, 3, spatial=(4, 4))
        names = [name for name, p in layer.named_parameters() if name.endswith("bias")]
        assert names == [f"paths.{list(layer.paths)[1]}.bias"]
    rpp = conv_plus_fc(2, 3, spatial=(4, 4))
    assert rpp.paths["fc"].bias.shape == (3 * 16,)  # RPP: nn.Linear's per-unit bias
    assert rpp.paths["conv"].bias.shape == (3,)


def test_parameter_counts_are_the_sums_of_the_paths():
    c_in, c_out, x, s = 2, 3, 4, 3
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(fc_plus_conv(c_in, c_out, spatial=(x, x), bias=False)) == c_out * c_in * (
        x**4 + s**2
    )
    assert count(ffc_plus_conv(c_in, c_out, spatial=(x, x), bias=False)) == c_out * c_in * (
        2 * x**2 + s**2
    )
    assert count(sfc_plus_sconv(c_in, c_out, spatial=(x, x), bias=False)) == c_out * c_in * (
        2 * 8 + 5
    )


class LiftToFakeGroup(nn.Module):
    """A 'group path': lifts [N, C, H, W] to [N, C', G, H, W] by a conv per group channel."""

    def __init__(self, c_in, c_out, group_size):
        super().__init__()
        self.conv = SpatialConv2d(c_in, c_out * group_size)
        self.c_out, self.group_size = c_out, group_size
        self.symmetry = LayerSymmetry(translations=True, point_group="fake")

    def forward(self, x):
        return self.conv(x).unflatten(1, (self.c_out, self.group_size))


def test_group_layout_plain_paths_see_merged_channel_and_group_axes(float64):
    g = 4
    plain = FactoredLinear(2, 3 * g, spatial=(4, 4))
    lifting = PathSum(
        {"ffc": plain, "gconv": LiftToFakeGroup(2, 3, g)}, group_paths=["gconv"], out_group_size=g
    )
    x = torch.randn(2, 2, 4, 4)
    y = lifting(x)
    assert y.shape == (2, 3, g, 4, 4)
    torch.testing.assert_close(
        lifting.path_outputs(x)["ffc"], plain(x).view(2, 3, g, 4, 4), rtol=0, atol=0
    )
    # a group -> group layer: plain paths receive [N, C * G, H, W] with channel index c * G + g
    conv = SpatialConv2d(3 * g, 5 * g)
    layer = PathSum({"conv": conv}, in_group_size=g, out_group_size=g)
    z = torch.randn(2, 3, g, 4, 4)
    torch.testing.assert_close(layer(z), conv(z.reshape(2, 3 * g, 4, 4)).view(2, 5, g, 4, 4))
    assert lifting.symmetry == LayerSymmetry()  # ffc has none
    assert layer.symmetry == LayerSymmetry(translations=True)


def test_path_sum_errors_name_the_culprits():
    with pytest.raises(ValueError, match="non-empty mapping"):
        PathSum({})
    with pytest.raises(ValueError, match="identifiers"):
        PathSum({"f-c": SpatialConv2d(1, 1)})
    with pytest.raises(ValueError, match=r"group_paths \['gconv'\] are not among"):
        PathSum({"conv": SpatialConv2d(1, 1)}, group_paths=["gconv"], out_group_size=2)
    with pytest.raises(ValueError, match="need out_group_size"):
        PathSum({"conv": SpatialConv2d(1, 1)}, group_paths=["conv"])
    bad = PathSum({"conv": SpatialConv2d(1, 2), "ffc": FactoredLinear(1, 3, spatial=(2, 2))})
    with pytest.raises(ValueError, match=r"path 'ffc' returned \[1, 3, 2, 2\] but path 'conv'"):
        bad(torch.randn(1, 1, 2, 2))
    grouped = PathSum({"conv": SpatialConv2d(2, 2)}, in_group_size=2, out_group_size=2)
    with pytest.raises(ValueError, match=r"group feature map \[N, C, 2, H, W\]"):
        grouped(torch.randn(1, 2, 2, 2))
    with pytest.raises(TypeError, match="symmetry must be a LayerSymmetry"):
        _ = PathSum({"x": _WithBadSymmetry()}).symmetry


class _WithBadSymmetry(nn.Module):
    symmetry = "translations"

    def forward(self, x):
        return x


def test_symmetry_metadata_is_validated():
    with pytest.raises(TypeError, match="translations must be a bool"):
        LayerSymmetry(translations=1)
    with pytest.raises(ValueError, match="empty string"):
        LayerSymmetry(point_group="")
    with pytest.raises(TypeError, match="single string"):
        LayerSymmetry(pixel_permutations="hflip")
    s = LayerSymmetry(translations=True, point_group="C4", pixel_permutations=["b", "a", "a"])
    assert s.pixel_permutations == ("a", "b")
    assert s.describe() == "translations x C4 x {a, b}"
    assert s.meet(LayerSymmetry(translations=True, point_group="D4")) == LayerSymmetry(
        translations=True
    )
