"""ACE homotopic layers f_eq + gamma * f_neq."""

import pytest
import torch
from torch import nn

from bayesym.groups import translation_group
from bayesym.layers import (
    FactoredLinear,
    HomotopicLayer,
    LayerSymmetry,
    SpatialConv2d,
    homotopy_parameters,
)
from bayesym.testing import (
    assert_equivariant,
    assert_not_equivariant,
    equivariance_errors,
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


def test_bad_gamma_init_is_rejected():
    with pytest.raises(ValueError, match="gamma_init must be finite"):
        make_layer(gamma_init=float("inf"))
