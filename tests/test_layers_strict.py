"""FC, CONV, F-FC, S-FC, S-CONV: formulas, parameter counts, brute-force oracles, symmetry."""

import itertools
import math

import pytest
import torch

from bayesym.groups import d4_subgroup, translation_group
from bayesym.layers import (
    PADDING_MODES,
    FactoredLinear,
    LayerSymmetry,
    SparseConv2d,
    SparseFactoredLinear,
    SpatialConv2d,
    SpatialLinear,
)
from bayesym.testing import (
    assert_equivariant,
    assert_not_equivariant,
    image_action,
    translation_action,
)

TOL = 1e-10


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def assert_shift_equivariant(layer, x):
    """Every cyclic shift of the grid, float64 tolerance 1e-10."""
    shifts = translation_group(*x.shape[-2:])
    act = translation_action(shifts)
    assert_equivariant(layer, shifts, x, act, act)


# --- parameter counts match the paper's formulas ----------------------------------------


@pytest.mark.parametrize("c_in,c_out,h,w", [(1, 1, 3, 3), (2, 3, 4, 5), (3, 2, 6, 4)])
def test_parameter_counts_match_paper_formulas(c_in, c_out, h, w):
    s = 3
    assert (
        n_params(SpatialLinear(c_in, c_out, spatial=(h, w), bias=False))
        == c_out * c_in * (h * w) ** 2
    )
    assert n_params(SpatialConv2d(c_in, c_out, s, bias=False)) == c_out * c_in * s**2
    assert (
        n_params(FactoredLinear(c_in, c_out, spatial=(h, w), bias=False))
        == 2 * c_out * c_in * h * w
    )
    m_conv = math.ceil(s * s / 2)
    assert n_params(SparseConv2d(c_in, c_out, s, bias=False)) == c_out * c_in * m_conv
    assert (
        n_params(SparseConv2d(c_in, c_out, s, bias=False, learnable_anchors=True))
        == c_out * c_in * m_conv + 2 * m_conv
    )
    m_fc = math.ceil(h * w / 2)
    assert (
        n_params(SparseFactoredLinear(c_in, c_out, spatial=(h, w), bias=False))
        == c_out * c_in * 2 * m_fc
    )
    assert (
        n_params(
            SparseFactoredLinear(
                c_in,
                c_out,
                spatial=(h, w),
                bias=False,
                learnable_anchors=True,
                learnable_omega=True,
            )
        )
        == c_out * c_in * 2 * m_fc + 2 * 2 * m_fc + 2
    )
    # a bias adds one parameter per output channel, except FC's per-unit bias
    assert n_params(SpatialConv2d(c_in, c_out, s)) == c_out * c_in * s**2 + c_out
    assert (
        n_params(SpatialLinear(c_in, c_out, spatial=(h, w), bias="unit"))
        == c_out * c_in * (h * w) ** 2 + c_out * h * w
    )


def test_parameter_shapes_follow_the_formulas():
    ffc = FactoredLinear(2, 3, spatial=(4, 5))
    assert ffc.theta1.shape == (3, 2, 20) and ffc.theta2.shape == (3, 2, 20)
    fc = SpatialLinear(2, 3, spatial=(4, 5))
    assert fc.weight.shape == (3 * 20, 2 * 20)
    sconv = SparseConv2d(2, 3, 5, num_anchors=7, learnable_anchors=True, learnable_omega=True)
    names = dict(sconv.named_parameters())
    assert names["anchor_values"].shape == (3, 2, 7)
    assert names["basis.anchor_locations"].shape == (7, 2)
    assert names["basis.omega"].shape == ()
    sfc = SparseFactoredLinear(2, 3, spatial=(4, 4), learnable_omega=True)
    assert set(dict(sfc.named_parameters())) == {
        "anchor_values_out",
        "anchor_values_in",
        "bias",
        "basis_out.omega",
        "basis_in.omega",
    }


# --- brute-force oracles ------------------------------------------------------------------


def test_factored_linear_equals_the_dense_weight_it_factorises(float64):
    c_in, c_out, h, w = 2, 3, 3, 4
    layer = FactoredLinear(c_in, c_out, spatial=(h, w))
    x = torch.randn(5, c_in, h, w)
    positions = h * w
    dense = torch.zeros(c_out, positions, c_in, positions)
    for co, ci, q, p in itertools.product(
        range(c_out), range(c_in), range(positions), range(positions)
    ):
        dense[co, q, ci, p] = layer.theta1[co, ci, q] * layer.theta2[co, ci, p]
    expected = torch.einsum("oqip,nip->noq", dense, x.flatten(2)) + layer.bias.view(1, -1, 1)
    torch.testing.assert_close(layer(x), expected.view(5, c_out, h, w), rtol=0, atol=TOL)


def test_factored_intermediate_is_the_input_of_theta1(float64):
    layer = FactoredLinear(2, 3, spatial=(2, 3))
    x = torch.randn(4, 2, 2, 3)
    x1 = layer.intermediate(x)
    assert x1.shape == (4, 3, 2)
    expected = torch.einsum("oiq,noi->noq", layer.theta1, x1) + layer.bias.view(1, -1, 1)
    torch.testing.assert_close(layer(x), expected.view(4, 3, 2, 3), rtol=0, atol=TOL)


def test_spatial_linear_is_equation_1(float64):
    c_in, c_out, h, w = 2, 2, 3, 3
    layer = SpatialLinear(c_in, c_out, spatial=(h, w), bias=False)
    x = torch.randn(2, c_in, h, w)
    weight = layer.weight.view(c_out, h, w, c_in, h, w)
    expected = torch.zeros(2, c_out, h, w)
    for co, xo, yo, ci, xi, yi in itertools.product(
        range(c_out), range(h), range(w), range(c_in), range(h), range(w)
    ):
        expected[:, co, xo, yo] += x[:, ci, xi, yi] * weight[co, xo, yo, ci, xi, yi]
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=TOL)


@pytest.mark.parametrize("bias", [True, "unit", False])
def test_spatial_linear_pickled_before_the_bias_rename_still_loads(bias):
    """A whole layer pickled when ``bias_per`` was called ``bias_kind`` unpickles and runs."""
    import pickle

    layer = SpatialLinear(2, 3, spatial=(2, 2), bias=bias)
    layer.__dict__["bias_kind"] = layer.__dict__.pop("bias_per")  # the layer as it was saved
    loaded = pickle.loads(pickle.dumps(layer))
    assert loaded.bias_per == {True: "channel", "unit": "unit", False: "none"}[bias]
    x = torch.randn(4, 2, 2, 2)
    layer.__dict__["bias_per"] = layer.__dict__.pop("bias_kind")
    torch.testing.assert_close(loaded(x), layer(x), rtol=0, atol=0)


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_conv_is_equation_3_with_the_padding_mode(float64, padding_mode):
    layer = SpatialConv2d(2, 3, 3, padding_mode=padding_mode)
    x = torch.randn(2, 2, 5, 6)
    reference = torch.nn.Conv2d(2, 3, 3, padding=1, padding_mode=padding_mode)
    with torch.no_grad():
        reference.weight.copy_(layer.weight)
        reference.bias.copy_(layer.bias)
    torch.testing.assert_close(layer(x), reference(x), rtol=0, atol=TOL)


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
def test_sparse_conv_equals_conv_with_the_interpolated_filter(float64, padding_mode):
    """Regression (reference code zero-pads S-CONV whatever padding_mode says)."""
    sconv = SparseConv2d(2, 3, 5, padding_mode=padding_mode, learnable_anchors=True)
    conv = SpatialConv2d(2, 3, 5, padding_mode=padding_mode)
    offsets = torch.arange(5.0) - 2
    grid = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), -1).view(-1, 2)
    anchors, omega = sconv.basis.anchor_locations, sconv.basis.omega
    psi = torch.exp(-(omega**2) * ((grid[None] - anchors[:, None]) ** 2).sum(-1))  # [M, 25]
    with torch.no_grad():
        conv.weight.copy_((sconv.anchor_values @ psi).view(3, 2, 5, 5))
        conv.bias.copy_(sconv.bias)
    x = torch.randn(2, 2, 6, 7)
    torch.testing.assert_close(sconv(x), conv(x), rtol=0, atol=TOL)


def test_sparse_conv_honours_padding_mode_regression(float64):
    """The reference S-CONV zero-pads regardless; ours must differ between modes at the border."""
    x = torch.randn(1, 1, 6, 6)
    outputs = {}
    for mode in PADDING_MODES:
        torch.manual_seed(1)
        outputs[mode] = SparseConv2d(1, 1, 3, padding_mode=mode)(x)
    for a, b in itertools.combinations(PADDING_MODES, 2):
        assert (outputs[a] - outputs[b]).abs().max() > 1e-3, (a, b)
        # interior pixels do not see the padding
        torch.testing.assert_close(outputs[a][..., 1:-1, 1:-1], outputs[b][..., 1:-1, 1:-1])


def test_sparse_factored_equals_factored_with_interpolated_factors(float64):
    sfc = SparseFactoredLinear(2, 3, spatial=(4, 5), num_anchors=6, omega=0.7)
    ffc = FactoredLinear(2, 3, spatial=(4, 5))
    theta1, theta2 = sfc.factors()
    with torch.no_grad():
        ffc.theta1.copy_(theta1)
        ffc.theta2.copy_(theta2)
        ffc.bias.copy_(sfc.bias)
    x = torch.randn(3, 2, 4, 5)
    torch.testing.assert_close(sfc(x), ffc(x), rtol=0, atol=TOL)
    psi = sfc.basis_matrices()
    assert psi["anchor_values_out"].shape == (6, 20) and psi["anchor_values_in"].shape == (6, 20)
    torch.testing.assert_close(theta1, sfc.anchor_values_out @ psi["anchor_values_out"])


def test_initial_output_scale_is_comparable_across_kinds(float64):
    """Each kind's init aims at nn.Linear's weight variance 1/(3 fan_in) (no exploding outputs)."""
    x = torch.randn(64, 4, 8, 8)
    stds = {}
    for name, layer in {
        "fc": SpatialLinear(4, 4, spatial=(8, 8), bias=False),
        "conv": SpatialConv2d(4, 4, 3, bias=False),
        "sconv": SparseConv2d(4, 4, 3, bias=False),
        "sfc": SparseFactoredLinear(4, 4, spatial=(8, 8), bias=False),
        "ffc": FactoredLinear(4, 4, spatial=(8, 8), bias=False),
    }.items():
        stds[name] = layer(x).std().item()
    for name in ("fc", "conv", "sconv"):
        assert 0.5 < stds[name] < 0.7, stds  # sqrt(1/3) = 0.577
    for name in ("ffc", "sfc"):  # two nn.Linear-scaled factors: variance 1/9, std 1/3
        assert 0.28 < stds[name] < 0.4, stds


# --- symmetry ------------------------------------------------------------------------------


def test_circular_conv_and_sparse_conv_commute_with_every_cyclic_shift(float64):
    x = torch.randn(2, 2, 5, 4)
    for layer in (SpatialConv2d(2, 3, 3), SparseConv2d(2, 3, 3, learnable_anchors=True)):
        assert layer.symmetry.translations
        assert_shift_equivariant(layer, x)


def test_conv_layers_are_not_equivariant_to_elements_outside_the_translations(float64):
    """Rotations and flips are outside CONV's group: every non-identity D4 element fails."""
    d4 = d4_subgroup("D4")
    x = torch.randn(2, 2, 5, 5)
    for layer in (SpatialConv2d(2, 3, 3), SparseConv2d(2, 3, 3)):
        assert layer.symmetry.point_group is None
        assert_not_equivariant(
            layer, range(1, 8), x, image_action(d4), image_action(d4), require="all"
        )


def test_circular_conv_is_equivariant_on_maps_smaller_than_the_filter(float64):
    layer = SpatialConv2d(2, 2, 5)
    x = torch.randn(1, 2, 2, 3)
    assert_shift_equivariant(layer, x)
    one = torch.randn(3, 2, 1, 1)  # 5x5 circular filter on 1x1 maps: sum of the filter taps
    torch.testing.assert_close(
        layer(one).flatten(1), one.flatten(1) @ layer.weight.sum((-2, -1)).T + layer.bias
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: SpatialLinear(2, 2, spatial=(4, 4)),
        lambda: FactoredLinear(2, 2, spatial=(4, 4)),
        lambda: SparseFactoredLinear(2, 2, spatial=(4, 4)),
        lambda: SpatialConv2d(2, 2, 3, padding_mode="zeros"),
        lambda: SparseConv2d(2, 2, 3, padding_mode="replicate"),
    ],
    ids=["fc", "ffc", "sfc", "conv-zeros", "sconv-replicate"],
)
def test_unconstrained_layers_are_measurably_not_shift_equivariant(float64, make):
    layer = make()
    assert layer.symmetry.is_trivial
    x = torch.randn(2, 2, 4, 4)
    shifts = translation_group(4, 4)
    act = translation_action(shifts)
    non_identity = range(1, shifts.order)
    assert_not_equivariant(layer, non_identity, x, act, act, require="all")


def test_sparse_fc_with_zero_lengthscale_parameter_is_shift_equivariant(float64):
    """Sec. 3.2: a prior forcing omega -> 0 makes S-FC stationary, hence equivariant."""
    layer = SparseFactoredLinear(2, 2, spatial=(4, 4), learnable_omega=True)
    x = torch.randn(2, 2, 4, 4)
    assert layer.symmetry.is_trivial
    with torch.no_grad():
        layer.basis_out.omega.zero_()
    assert layer.symmetry.is_trivial  # one factor still position-dependent
    with torch.no_grad():
        layer.basis_in.omega.zero_()
    assert layer.symmetry == LayerSymmetry(translations=True)
    assert_shift_equivariant(layer, x)


def test_omega_zero_makes_sparse_conv_filters_constant(float64):
    layer = SparseConv2d(2, 2, 3, omega=0.0)
    f = layer.filter()
    torch.testing.assert_close(f, f[..., :1, :1].expand_as(f))


# --- dtype / device / errors ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_layers_follow_input_dtype_and_device(dtype, device):
    x = torch.randn(2, 2, 4, 4, dtype=dtype, device=device)
    for layer in (
        SpatialLinear(2, 3, spatial=(4, 4)),
        SpatialConv2d(2, 3),
        FactoredLinear(2, 3, spatial=(4, 4)),
        SparseConv2d(2, 3, learnable_anchors=True),
        SparseFactoredLinear(2, 3, spatial=(4, 4), learnable_omega=True),
    ):
        layer = layer.to(device=device, dtype=dtype)
        y = layer(x)
        assert y.dtype == dtype and y.device == x.device and y.shape == (2, 3, 4, 4)


def test_wrong_input_shape_names_the_layer_and_the_shapes():
    layer = FactoredLinear(2, 3, spatial=(4, 4))
    with pytest.raises(
        ValueError, match=r"FactoredLinear\(2, 3, spatial=\(4, 4\).*\[N, 2, 4, 4\].*\[1, 2, 4, 5\]"
    ):
        layer(torch.randn(1, 2, 4, 5))
    with pytest.raises(ValueError, match=r"SpatialConv2d.*\[N, 3, H, W\].*\[1, 2, 4, 4\]"):
        SpatialConv2d(3, 1)(torch.randn(1, 2, 4, 4))
    with pytest.raises(
        TypeError, match=r"SpatialLinear.*input dtype torch.float32 differs.*float64"
    ):
        SpatialLinear(1, 1, spatial=(2, 2)).double()(torch.ones(1, 1, 2, 2))
    with pytest.raises(TypeError, match="floating-point"):
        SpatialConv2d(1, 1)(torch.ones(1, 1, 3, 3, dtype=torch.int64))


def test_bad_constructor_arguments_raise_named_errors():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        SpatialConv2d(1, 1, 4)
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        SparseConv2d(1, 1, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="num_anchors must be <= H\\*W = 9"):
        SparseConv2d(1, 1, 3, num_anchors=10)
    with pytest.raises(ValueError, match="spatial must be a pair"):
        FactoredLinear(1, 1, spatial=(4,))
    with pytest.raises(ValueError, match="omega must be finite"):
        SparseFactoredLinear(1, 1, spatial=(2, 2), omega=float("nan"))
    with pytest.raises(TypeError, match="in_channels must be an int"):
        SpatialLinear(1.5, 1, spatial=(2, 2))
    with pytest.raises(ValueError, match="bias must be True, False or 'unit'"):
        SpatialLinear(1, 1, spatial=(2, 2), bias="channel")
    with pytest.raises(ValueError, match="reflect padding of 2 pixels"):
        SpatialConv2d(1, 1, 5, padding_mode="reflect")(torch.randn(1, 1, 2, 2))
