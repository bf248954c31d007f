"""Layer-kind registry: one signature, every kind maps [N, C_in, H, W] -> [N, C_out, H, W]."""

import pytest
import torch

from bayesym.layers import (
    LAYER_KINDS,
    FactoredLinear,
    PathSum,
    SparseConv2d,
    SparseFactoredLinear,
    SpatialConv2d,
    SpatialLinear,
    layer_kinds,
    make_layer,
    register_layer_kind,
)

EXPECTED = {
    "fc": (SpatialLinear, None),
    "conv": (SpatialConv2d, None),
    "ffc": (FactoredLinear, None),
    "sfc": (SparseFactoredLinear, None),
    "sconv": (SparseConv2d, None),
    "fc+conv": (PathSum, ["fc", "conv"]),
    "ffc+conv": (PathSum, ["ffc", "conv"]),
    "sfc+sconv": (PathSum, ["sfc", "sconv"]),
}


def test_required_kinds_are_registered():
    assert set(EXPECTED) <= set(layer_kinds())


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_every_kind_builds_with_one_signature(kind):
    cls, paths = EXPECTED[kind]
    layer = make_layer(kind, 2, 3, spatial=(4, 6), kernel_size=3)
    assert type(layer) is cls
    if paths is not None:
        assert list(layer.paths) == paths
    assert layer(torch.randn(5, 2, 4, 6)).shape == (5, 3, 4, 6)


def test_options_reach_the_layers():
    layer = make_layer(
        "sfc+sconv", 2, 2, spatial=(4, 4), padding_mode="zeros", learnable_omega=True
    )
    assert layer.paths["sconv"].padding_mode == "zeros"
    assert "paths.sfc.basis_in.omega" in dict(layer.named_parameters())
    assert make_layer("conv", 1, 1, spatial=(4, 4), kernel_size=5).weight.shape == (1, 1, 5, 5)
    assert make_layer("conv", 1, 1, spatial=(4, 4), bias=False).bias is None


def test_unknown_kind_and_option_are_named():
    with pytest.raises(ValueError, match=r"unknown layer kind 'gconv\+fc'; known kinds: \['fc'"):
        make_layer("gconv+fc", 1, 1, spatial=(2, 2))
    with pytest.raises(TypeError, match=r"layer kind 'ffc' does not accept.*padding_mode"):
        make_layer("ffc", 1, 1, spatial=(2, 2), padding_mode="zeros")


def test_adding_a_kind_is_one_registration():
    def factory(in_channels, out_channels, *, spatial, kernel_size, **options):
        return SpatialConv2d(
            in_channels, out_channels, kernel_size, padding_mode="zeros", **options
        )

    saved = dict(LAYER_KINDS)
    try:
        register_layer_kind("zero-padded-conv", factory)
        layer = make_layer("zero-padded-conv", 2, 2, spatial=(3, 3))
        assert layer.padding_mode == "zeros"
        with pytest.raises(ValueError, match="already exists"):
            register_layer_kind("conv", factory)
        register_layer_kind("conv", factory, replace=True)
        assert make_layer("conv", 1, 1, spatial=(2, 2)).padding_mode == "zeros"
    finally:
        LAYER_KINDS.clear()
        LAYER_KINDS.update(saved)
    assert "zero-padded-conv" not in layer_kinds()
