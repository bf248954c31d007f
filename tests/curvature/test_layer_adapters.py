"""KFAC of every layer of the zoo vs the exact GGN (torch.func) and the KFAC definitions.

Exactness cases used below:
* one datum, no weight sharing (single-position layers: FC, F-FC/S-FC with one channel);
* one datum whose activations are constant over space and group axis (a constant image through
  circular convolutions): every shared input copy ``a_{j,t}`` is equal, so KFAC-*reduce* is
  exact for CONV, S-CONV, lifting and group convolutions of any group;
* dense blocks (AEN orbit weights, ``γ``, batch-norm affine, RBF ``ω``) are exact for any data.
"""

import pytest
import torch
from oracles import block, exact_ggn, output_hessian, output_jacobian, parameter_layout
from torch import nn
from torch.func import functional_call, jacrev

import bayesym  # noqa: F401  (registers the adapters)
from bayesym.groups.d4 import d4_subgroup
from bayesym.layers import (
    FactoredLinear,
    GroupBatchNorm,
    GroupConv2d,
    GroupPool,
    HomotopicLayer,
    LiftingConv2d,
    MixedGroupConv2d,
    MixedLiftingConv2d,
    SparseConv2d,
    SparseFactoredLinear,
    SpatialConv2d,
    SpatialLinear,
)
from bayesym.layers.shared import OrbitSharedLinear
from curvature import KFACConfig, compute_kfac


def assert_exact(model, x, y=None, approx="reduce", atol=1e-10, names=None):
    y = torch.tensor([1]) if y is None else y
    kfac = compute_kfac(model, (x, y), config=KFACConfig(approx=approx))
    dense, layout = exact_ggn(model, x), parameter_layout(model)
    assert sum(b.numel for b in kfac) == sum(n for _, n in layout)
    for b in kfac:
        if names is None or b.name in names:
            got, want = b.to_dense(), block(dense, layout, b.params)
            assert torch.allclose(got, want, atol=atol, rtol=1e-9), b.name
    return kfac, dense


def constant_image(channels=2, size=4):
    return torch.randn(1, channels, 1, 1).expand(1, channels, size, size).contiguous()


class Head(nn.Module):
    """Global mean over every axis but the channels, then a linear classifier."""

    def __init__(self, channels, classes=3):
        super().__init__()
        self.linear = nn.Linear(channels, classes)

    def forward(self, x):
        return self.linear(x.flatten(2).mean(-1))


def test_conv_and_sparse_conv_are_exact_on_constant_images(float64):
    model = nn.Sequential(
        SpatialConv2d(2, 3), nn.Tanh(),
        SparseConv2d(3, 2, learnable_omega=True, learnable_anchors=True), nn.Tanh(),
        Head(2),
    )  # fmt: skip
    kfac, _ = assert_exact(model, constant_image())
    assert "2.basis.omega" in kfac.names and "2.basis.anchor_locations" in kfac.names


@pytest.mark.parametrize("group", ["C2", "C4", "D1", "D2", "D4"])
def test_lifting_and_group_conv_are_exact_on_constant_images(float64, group):
    g = d4_subgroup(group)
    model = nn.Sequential(
        LiftingConv2d(2, 3, 3, g), nn.Tanh(), GroupConv2d(3, 2, 3, g), nn.Tanh(), Head(2)
    )
    assert_exact(model, constant_image())


@pytest.mark.parametrize("kind", ["lifting", "group"])
@pytest.mark.parametrize("group", ["C4", "D4"])
def test_group_conv_expand_factors_match_their_definition(float64, kind, group):
    g = d4_subgroup(group)
    # >= 3 input channels (lifting) and 2 |G| merged channels (group): the input factor takes
    # the shifted-product route of curvature.conv_patch_covariance in both cases
    layer = LiftingConv2d(3, 3, 3, g) if kind == "lifting" else GroupConv2d(2, 3, 3, g)
    x = torch.randn(3, 3, 4, 4) if kind == "lifting" else torch.randn(3, 2, g.order, 4, 4)
    model = nn.Sequential(layer, nn.Tanh(), nn.Flatten(), nn.Linear(3 * g.order * 16, 3))
    kfac = compute_kfac(model, (x, torch.randint(0, 3, (3,))))
    b, a = kfac["0.weight"].factors
    # a_{n,g',t}: the gradient of output (o=0, g', t) w.r.t. weight row 0, by autograd
    params = {k: v.detach() for k, v in layer.named_parameters()}
    wjac = jacrev(lambda w: functional_call(layer, {**params, "weight": w}, (x,)))(params["weight"])
    n, m, t = x.shape[0], g.order, 16
    rows = wjac.reshape(n, 3, m, t, 3, -1)[:, 0, :, :, 0]  # [N, |G|, T, D]
    a_def = torch.einsum("ngtd,ngte->de", rows, rows) / (n * m * t)
    jac, f, _ = output_jacobian(model, layer, x)  # [N, C, C_out, |G|, H, W]
    jac = jac.reshape(n, 3, 3, m * t)
    b_def = torch.einsum("ncou,ncd,ndpu->op", jac, output_hessian(f, "classification"), jac)
    assert torch.allclose(a.to_dense(), a_def, atol=1e-12)
    assert torch.allclose(b.to_dense(), b_def, atol=1e-12)


@pytest.mark.parametrize("kind", ["lifting", "group"])
def test_mixed_components_are_exact_up_to_the_weight_norm_projection(float64, kind):
    g = d4_subgroup("D4")
    comps = [d4_subgroup(k) for k in ("C1", "C4", "D4")]
    if kind == "lifting":
        layer = MixedLiftingConv2d(2, 2, 3, g, components=comps)
        x = constant_image()
    else:
        layer = MixedGroupConv2d(2, 2, 3, g, components=comps)
        x = torch.randn(1, 2, 1, 1, 1).expand(1, 2, 8, 4, 4).contiguous()
    with torch.no_grad():
        layer.architecture_logits.copy_(torch.tensor([0.3, -0.2, 0.5]))
    model = nn.Sequential(layer, nn.Tanh(), Head(2))
    kfac = compute_kfac(model, (x, torch.tensor([2])), config=KFACConfig(approx="reduce"))
    dense, layout = exact_ggn(model, x), parameter_layout(model)
    for b in kfac:
        want = block(dense, layout, b.params)
        got = b.to_dense()
        if ".directions." in b.name:
            v = layer.directions[b.name.rsplit(".", 1)[-1]].detach().flatten(1)
            u = v / v.norm(dim=1, keepdim=True)
            proj = torch.block_diag(*[torch.eye(u.shape[1]) - r[:, None] * r[None] for r in u])
            got = proj @ got @ proj
        assert torch.allclose(got, want, atol=1e-10), b.name


@pytest.mark.parametrize("sparse", [False, True], ids=["ffc", "sfc"])
def test_factored_layers_are_exact_with_single_channels(float64, sparse):
    if sparse:
        layer = SparseFactoredLinear(1, 1, spatial=(3, 3), learnable_omega=True)
    else:
        layer = FactoredLinear(1, 1, spatial=(3, 3))
    model = nn.Sequential(layer, nn.Tanh(), nn.Flatten(), nn.Linear(9, 3))
    assert_exact(model, torch.randn(1, 1, 3, 3), approx="expand")


def test_factored_layer_matches_the_validated_test_layer(float64):
    """bayesym's F-FC gives the same factors as the definition-checked test-only layer."""
    from custom_layers import TinyFactoredLinear, registry

    ours = FactoredLinear(3, 2, spatial=(2, 3), bias=False)
    twin = TinyFactoredLinear(3, 2, 6, 6)
    twin.theta1.data, twin.theta2.data = ours.theta1.data.clone(), ours.theta2.data.clone()
    head = nn.Linear(12, 3)
    x, y = torch.randn(5, 3, 2, 3), torch.randint(0, 3, (5,))
    k1 = compute_kfac(nn.Sequential(ours, nn.Tanh(), nn.Flatten(), head), (x, y))
    k2 = compute_kfac(
        nn.Sequential(twin, nn.Tanh(), nn.Flatten(), head), (x.flatten(2), y), registry=registry()
    )
    for name in ("0.theta1", "0.theta2"):
        assert torch.allclose(k1[name].to_dense(), k2[name].to_dense(), atol=1e-12)


def test_sparse_factored_projects_the_factored_layer(float64):
    sfc = SparseFactoredLinear(2, 2, spatial=(3, 3), bias=False)
    ffc = FactoredLinear(2, 2, spatial=(3, 3), bias=False)
    theta1, theta2 = sfc.factors()
    ffc.theta1.data, ffc.theta2.data = theta1.detach().clone(), theta2.detach().clone()
    head = nn.Linear(18, 3)
    x, y = torch.randn(4, 2, 3, 3), torch.randint(0, 3, (4,))
    ks = compute_kfac(nn.Sequential(sfc, nn.Tanh(), nn.Flatten(), head), (x, y))
    kf = compute_kfac(nn.Sequential(ffc, nn.Tanh(), nn.Flatten(), head), (x, y))
    psi_out, psi_in = sfc.basis_out.matrix().detach(), sfc.basis_in.matrix().detach()
    a1s, b1s = ks["0.anchor_values_out"].factors
    a1f, b1f = kf["0.theta1"].factors
    assert torch.allclose(a1s.data, a1f.data) and torch.allclose(
        b1s.data, psi_out @ b1f.data @ psi_out.T
    )
    b2s, a2s = ks["0.anchor_values_in"].factors
    b2f, a2f = kf["0.theta2"].factors
    assert torch.allclose(b2s.data, b2f.data)
    assert torch.allclose(a2s.data, psi_in @ a2f.data @ psi_in.T)


def test_fc_on_feature_maps_is_exact_for_one_datum(float64):
    for bias in (True, "unit", False):
        model = nn.Sequential(
            SpatialLinear(2, 2, spatial=(2, 2), bias=bias), nn.Tanh(), nn.Flatten(), nn.Linear(8, 3)
        )
        assert_exact(model, torch.randn(1, 2, 2, 2), approx="expand")


def test_orbit_shared_layer_blocks_are_exact_for_any_data(float64):
    layer = OrbitSharedLinear.from_transforms(["hflip"], (2, 4), out_features=4)
    model = nn.Sequential(nn.Flatten(), layer, nn.Tanh(), nn.Linear(4, 3))
    x, y = torch.randn(7, 2, 4), torch.randint(0, 3, (7,))
    assert_exact(model, x, y, names={"1.orbit_weights", "1.orbit_bias"})


def test_homotopic_gamma_and_batchnorm_blocks_are_exact_for_any_data(float64):
    g = d4_subgroup("C4")
    norm = GroupBatchNorm(3, g)
    model = nn.Sequential(
        LiftingConv2d(1, 3, 3, g), norm, nn.Tanh(),
        HomotopicLayer(GroupConv2d(3, 3, 3, g), GroupConv2d(3, 3, 1, g, bias=False)),
        GroupPool("mean"), Head(3),
    )  # fmt: skip
    x, y = torch.randn(6, 1, 4, 4), torch.randint(0, 3, (6,))
    model.train()
    for _ in range(3):
        model(torch.randn(6, 1, 4, 4))  # non-trivial running statistics
    with pytest.raises(Exception, match="train mode"):
        compute_kfac(model, (x, y))
    model.eval()
    assert_exact(model, x, y, names={"3.homotopy_gamma", "1.weight", "1.bias"})


def test_excluded_small_parameters_are_not_computed(float64, monkeypatch):
    """Excluding the mixture logits skips their (expensive) tangents; other blocks unchanged."""
    import bayesym.adapters.convolutions as convolutions

    g = d4_subgroup("C4")
    layer = MixedLiftingConv2d(1, 2, 3, g, components=[d4_subgroup("C1"), g])
    model = nn.Sequential(layer, nn.Tanh(), Head(2))
    x, y = torch.randn(4, 1, 4, 4), torch.randint(0, 3, (4,))
    calls = []
    original = convolutions.mixture_logit_tangents
    monkeypatch.setattr(
        convolutions, "mixture_logit_tangents", lambda *a: calls.append(1) or original(*a)
    )
    full = compute_kfac(model, (x, y))
    assert calls == [1]  # the closed-form tangents are what is skipped below
    partial = compute_kfac(model, (x, y), exclude=["0.architecture_logits"])
    assert calls == [1]
    assert "0.architecture_logits" not in partial.names
    for b in partial:
        assert torch.allclose(b.to_dense(), full[b.name].to_dense()), b.name


@pytest.mark.parametrize("kind", ["lifting", "group"])
@pytest.mark.parametrize(("group", "components", "padding_mode"), [
    ("D4", None, "circular"),
    ("C4", ("C1", "C4"), "zeros"),
])  # fmt: skip
def test_mixture_logit_tangents_equal_forward_mode_ad(
    float64, kind, group, components, padding_mode
):
    """The closed form ``z_j (Y_j - Σ z_K Y_K)`` equals ``torch.func.jvp`` on random data."""
    from bayesym.adapters.convolutions import mixture_logit_tangents
    from curvature.adapters import parameter_tangents

    g = d4_subgroup(group)
    comps = None if components is None else [d4_subgroup(k) for k in components]
    cls = MixedLiftingConv2d if kind == "lifting" else MixedGroupConv2d
    layer = cls(2, 3, 3, g, components=comps, padding_mode=padding_mode)
    with torch.no_grad():
        layer.architecture_logits.copy_(torch.randn(len(layer.components)))
        if layer.bias is not None:
            layer.bias.normal_()
    shape = (4, 2, 5, 6) if kind == "lifting" else (4, 2, g.order, 5, 6)
    x = torch.randn(*shape)
    got = mixture_logit_tangents(layer, x)
    want = parameter_tangents(layer, (x,), ["architecture_logits"])
    assert got.shape == want.shape == (4, len(layer.components), *layer(x).shape[1:])
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
