"""ACE homotopic layers f_eq + gamma * f_neq."""

import pytest
import torch
from torch import nn

from bayesym.groups import d4_subgroup, translation_group
from bayesym.layers import (
    FactoredLinear,
    HomotopicLayer,
    LayerSymmetry,
    SpatialConv2d,
    equivariant_projection,
    homotopic_gconv_conv,
    homotopy_parameters,
    layer_kind,
)
from bayesym.layers import make_layer as make_registered
from bayesym.testing import (
    assert_equivariant,
    assert_not_equivariant,
    equivariance_errors,
    image_action,
    regular_action,
    translation_action,
)


def make_layer(**kwargs):
    return HomotopicLayer(SpatialConv2d(2, 3), FactoredLinear(2, 3, spatial=(4, 4)), **kwargs)


def test_gamma_is_a_recognisable_parameter_initialised_at_one():
    layer = make_layer()
    params = dict(layer.named_parameters())
    assert isinstance(params["homotopy_gamma"], nn.Parameter)
    assert params["homotopy_gamma"].shape == () and params["homotopy_gamma"].item() == 1.0
    assert list(layer.paths) == ["eq", "neq"]
    assert make_layer(gamma_init=0.25).homotopy_gamma.item() == 0.25


def test_forward_is_eq_plus_gamma_times_neq(float64):
    layer = make_layer(gamma_init=0.3)
    x = torch.randn(2, 2, 4, 4)
    expected = layer.paths["eq"](x) + 0.3 * layer.paths["neq"](x)
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-12)
    layer(x).sum().backward()
    assert layer.homotopy_gamma.grad is not None


def test_exactly_equivariant_at_gamma_zero_and_error_linear_in_gamma(float64):
    layer = make_layer()
    x = torch.randn(2, 2, 4, 4)
    shifts = translation_group(4, 4)
    act = translation_action(shifts)
    assert_not_equivariant(layer, range(1, 16), x, act, act, require="all")
    errors_at_one = torch.tensor(equivariance_errors(layer, shifts, x, act, act))
    with torch.no_grad():
        layer.homotopy_gamma.fill_(0.5)
    errors_at_half = torch.tensor(equivariance_errors(layer, shifts, x, act, act))
    torch.testing.assert_close(errors_at_half, 0.5 * errors_at_one, rtol=1e-9, atol=1e-12)
    with torch.no_grad():
        layer.homotopy_gamma.zero_()
    assert layer.strict_symmetry() == LayerSymmetry(translations=True)
    assert_equivariant(layer, shifts, x, act, act)


def test_homotopy_parameters_finds_every_gamma():
    net = nn.Sequential(make_layer(), nn.ReLU(), nn.Sequential(make_layer(gamma_init=0.5)))
    found = homotopy_parameters(net)
    assert list(found) == ["0.homotopy_gamma", "2.0.homotopy_gamma"]
    assert found["2.0.homotopy_gamma"] is net[2][0].homotopy_gamma
    assert list(homotopy_parameters(make_layer())) == ["homotopy_gamma"]


def test_equivariant_projection_zeroes_every_gamma_and_restores_them():
    net = nn.Sequential(make_layer(gamma_init=0.5), nn.ReLU(), make_layer(gamma_init=-2.0))
    with pytest.raises(RuntimeError, match="inside"), equivariant_projection(net):
        assert [g.item() for g in homotopy_parameters(net).values()] == [0.0, 0.0]
        raise RuntimeError("inside")
    assert [g.item() for g in homotopy_parameters(net).values()] == [0.5, -2.0]


def test_bad_gamma_init_is_rejected():
    with pytest.raises(ValueError, match="gamma_init must be finite"):
        make_layer(gamma_init=float("inf"))


# ------------------------------------------------------------- GCONV + γ CONV (group kinds)
@pytest.mark.parametrize("kind", ["homotopic-gconv-conv", "homotopic-pgconv-conv"])
@pytest.mark.parametrize("group_name", ["C4", "D4"])
@pytest.mark.parametrize("lifting", [False, True], ids=["group-to-group", "lifting"])
def test_group_homotopic_kinds_are_exactly_equivariant_at_gamma_zero_only(
    float64, kind, group_name, lifting
):
    group = d4_subgroup(group_name)
    layer = make_registered(kind, 2, 3, spatial=(4, 4), group=group_name, lifting=lifting)
    assert isinstance(layer, HomotopicLayer) and list(layer.paths) == ["eq", "neq"]
    assert layer_kind(kind).group_axis
    x = torch.randn(2, 2, 4, 4) if lifting else torch.randn(2, 2, group.order, 4, 4)
    act_in = image_action(group) if lifting else regular_action(group)
    act_out = regular_action(group)
    assert layer(x).shape == (2, 3, group.order, 4, 4)
    shifts = translation_group(4, 4)
    shift = translation_action(shifts)
    rotations_flips = range(1, group.order)
    assert_equivariant(layer, shifts, x, shift, shift)  # the CONV path keeps the shifts
    assert_not_equivariant(layer, rotations_flips, x, act_in, act_out, require="all")
    with torch.no_grad():
        layer.homotopy_gamma.zero_()
    assert layer.strict_symmetry() == LayerSymmetry(translations=True, point_group=group_name)
    assert_equivariant(layer, group, x, act_in, act_out)
    assert_equivariant(layer, shifts, x, shift, shift)


def test_group_homotopic_forward_is_gconv_plus_gamma_conv_on_merged_axes(float64):
    layer = homotopic_gconv_conv(2, 3, spatial=(4, 4), group="C4", gamma_init=0.25)
    x = torch.randn(2, 2, 4, 4, 4)
    conv = layer.paths["neq"](x.flatten(1, 2)).unflatten(1, (3, 4))
    torch.testing.assert_close(layer(x), layer.paths["eq"](x) + 0.25 * conv, rtol=0, atol=1e-12)
    assert type(layer.paths["eq"]).__name__ == "GroupConv2d"
    assert layer.paths["neq"].bias is None
    with pytest.raises(ValueError, match="group_path must be 'gconv' or 'pgconv'"):
        homotopic_gconv_conv(2, 3, spatial=(4, 4), group_path="conv")
