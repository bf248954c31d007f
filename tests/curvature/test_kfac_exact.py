"""KFAC for nn.Linear / nn.Conv2d vs the exact GGN (torch.func) and the KFAC definitions."""

import weakref

import pytest
import torch
from oracles import (
    block,
    empirical_fisher,
    exact_ggn,
    output_hessian,
    output_jacobian,
    parameter_layout,
    relative_error,
)
from torch import nn
from torch.func import functional_call, jacrev

from curvature import KFACConfig, compute_kfac
from curvature.engine import resolve_backward


def labels(n, c, likelihood):
    return torch.randint(0, c, (n,)) if likelihood == "classification" else torch.randn(n, c)


def assert_blocks_equal_exact(model, kfac, dense, atol=1e-10):
    layout = parameter_layout(model)
    assert sum(b.numel for b in kfac) == sum(n for _, n in layout)  # every parameter covered
    for b in kfac:
        expected = block(dense, layout, b.params)
        assert torch.allclose(b.to_dense(), expected, atol=atol, rtol=1e-10), b.name


def mlp(bias=True):
    return nn.Sequential(
        nn.Linear(3, 4, bias=bias),
        nn.Tanh(),
        nn.Linear(4, 5, bias=bias),
        nn.Tanh(),
        nn.Linear(5, 3, bias=bias),
    )


@pytest.mark.parametrize("likelihood", ["classification", "regression"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("approx", ["expand", "reduce"])
def test_linear_kfac_is_exact_for_one_datum(float64, likelihood, bias, approx):
    model = mlp(bias)
    x = torch.randn(1, 3)
    y = labels(1, 3, likelihood)
    kfac = compute_kfac(model, (x, y), likelihood, KFACConfig(approx=approx), sigma=0.7)
    assert_blocks_equal_exact(model, kfac, exact_ggn(model, x, likelihood, sigma=0.7))


def test_empirical_fisher_kfac_is_exact_for_one_datum(float64):
    model = mlp()
    x, y = torch.randn(1, 3), torch.tensor([2])
    kfac = compute_kfac(model, (x, y), "classification", KFACConfig(ggn_type="empirical"))
    assert_blocks_equal_exact(model, kfac, empirical_fisher(model, x, y))


def test_monte_carlo_kfac_converges_to_the_exact_ggn(float64):
    model = mlp()
    x, y = torch.randn(1, 3), torch.tensor([0])
    config = KFACConfig(ggn_type="mc", mc_samples=20000, seed=3)
    kfac = compute_kfac(model, (x, y), "classification", config)
    dense = exact_ggn(model, x)
    layout = parameter_layout(model)
    for b in kfac:
        assert relative_error(b.to_dense(), block(dense, layout, b.params)) < 0.05, b.name
    again = compute_kfac(model, (x, y), "classification", config)
    assert torch.equal(again["0.weight"].factors[0].data, kfac["0.weight"].factors[0].data)


def test_linear_with_leading_dims_is_exact_for_one_position(float64):
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Flatten(), nn.Linear(4, 2))
    x = torch.randn(1, 1, 3)
    kfac = compute_kfac(model, (x, torch.tensor([1])))
    assert_blocks_equal_exact(model, kfac, exact_ggn(model, x))


EXACT_CONVS = {
    "valid-3x3": (dict(kernel_size=3), (3, 3)),
    "circular-1x1-input": (dict(kernel_size=3, padding=1, padding_mode="circular"), (1, 1)),
    "strided-groups": (dict(kernel_size=3, stride=3, groups=2), (5, 5)),
    "dilated-rect": (dict(kernel_size=(2, 3), dilation=2), (3, 5)),
    "no-bias": (dict(kernel_size=(3, 1), bias=False), (3, 1)),
}


@pytest.mark.parametrize("name", list(EXACT_CONVS))
@pytest.mark.parametrize("approx", ["expand", "reduce"])
def test_conv_kfac_is_exact_for_one_datum_and_one_position(float64, name, approx):
    options, (h, w) = EXACT_CONVS[name]
    conv = nn.Conv2d(2, 4, **options)
    model = nn.Sequential(conv, nn.Tanh(), nn.Flatten(), nn.Linear(4, 3))
    x = torch.randn(1, 2, h, w)
    kfac = compute_kfac(model, (x, torch.tensor([1])), config=KFACConfig(approx=approx))
    assert_blocks_equal_exact(model, kfac, exact_ggn(model, x))


def test_kfac_over_batches_equals_kfac_of_the_union(float64):
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(48, 3))
    x, y = torch.randn(5, 2, 4, 4), torch.randint(0, 3, (5,))
    whole = compute_kfac(model, (x, y))
    batched = compute_kfac(model, [(x[:2], y[:2]), (x[2:], y[2:])])
    assert batched.num_data == 5
    assert torch.allclose(batched.log_likelihood, whole.log_likelihood)
    for b in whole:
        assert torch.allclose(batched[b.name].to_dense(), b.to_dense(), atol=1e-12), b.name


CONV_SETTINGS = {
    "zeros": dict(padding=1),
    "circular": dict(padding=1, padding_mode="circular"),
    "reflect": dict(padding=1, padding_mode="reflect"),
    "replicate-asym": dict(padding=(1, 2), padding_mode="replicate"),
    "same-even-kernel": dict(kernel_size=(2, 3), padding="same", padding_mode="circular"),
    "same-zeros": dict(kernel_size=(2, 2), padding="same"),
    "valid": dict(padding="valid"),
    "stride": dict(stride=2, padding=1),
    "dilation": dict(dilation=2, padding=2, padding_mode="circular"),
    "groups": dict(groups=2, padding=1),
    "stride-no-bias": dict(stride=(1, 2), padding=1, bias=False),
}


@pytest.mark.parametrize(
    "setting",
    [*CONV_SETTINGS.values(), dict(kernel_size=(4, 3), padding="same", dilation=(3, 2))],
)
def test_conv_padding_is_read_from_public_attributes(setting):
    """The adapter's padding amounts equal those nn.Conv2d's own forward applies."""
    from curvature.adapters.conv import _padding

    conv = nn.Conv2d(2, 4, **{"kernel_size": 3, **setting})
    assert _padding(conv) == list(conv._reversed_padding_repeated_twice)


def conv_definition(model, conv, x, approx):
    """KFAC factors of ``conv`` computed from their definition with autograd Jacobians."""
    jac, f, s = output_jacobian(model, conv, x)  # [N, C, Co, Ho, Wo]
    lam = output_hessian(f, "classification")
    n, c, c_out = jac.shape[:3]
    t = s.shape[-2] * s.shape[-1]
    groups = conv.groups
    per = c_out // groups
    # Patches from the Jacobian of the conv output w.r.t. its own weight (no unfold involved).
    params = {k: v.detach() for k, v in conv.named_parameters()}
    wjac = jacrev(lambda w: functional_call(conv, {**params, "weight": w}, (x,)))(params["weight"])
    wjac = wjac.reshape(n, c_out, t, c_out, -1)
    patches = torch.stack([wjac[:, k * per, :, k * per] for k in range(groups)])  # [G, N, T, D]
    g = jac.reshape(n, c, c_out, t)
    # Λ^{1/2}: rows of the output Jacobian combined with Λ give B = Σ Jᵀ Λ J.
    out = {}
    for k in range(groups):
        a = patches[k]
        gk = g[:, :, k * per : (k + 1) * per]  # [N, C, per, T]
        if approx == "expand":
            out[k] = (
                torch.einsum("ntd,nte->de", a, a) / (n * t),
                torch.einsum("ncot,ncd,ndpt->op", gk, lam, gk),
            )
        else:
            abar = a.mean(1)
            gsum = gk.sum(-1)
            out[k] = (abar.T @ abar / n, torch.einsum("nco,ncd,ndp->op", gsum, lam, gsum))
    if approx == "expand":
        bias = torch.einsum("ncot,ncd,ndpt->op", g, lam, g)
    else:
        bias = torch.einsum("nco,ncd,ndp->op", g.sum(-1), lam, g.sum(-1))
    return out, bias


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("name", list(CONV_SETTINGS))
@pytest.mark.parametrize("approx", ["expand", "reduce"])
def test_conv_factors_match_their_definition(float64, name, approx):
    options = {"kernel_size": 3, **CONV_SETTINGS[name]}
    # 6 input channels = 3 per conv group: the stride-1 expand factors take the shifted-product
    # route of conv_covariance.py (used from 3 channels on), the strided ones the unfold route.
    conv = nn.Conv2d(6, 4, **options)
    probe = conv(torch.zeros(1, 6, 5, 6))
    model = nn.Sequential(conv, nn.Tanh(), nn.Flatten(), nn.Linear(probe[0].numel(), 3))
    x = torch.randn(3, 6, 5, 6)
    kfac = compute_kfac(model, (x, torch.randint(0, 3, (3,))), config=KFACConfig(approx=approx))
    expected, bias = conv_definition(model, conv, x, approx)
    for k, (a, b) in expected.items():
        name_k = "0.weight" if conv.groups == 1 else f"0.weight.group{k}"
        factors = kfac[name_k].factors
        assert torch.allclose(factors[1].to_dense(), a, atol=1e-12), name_k
        assert torch.allclose(factors[0].to_dense(), b, atol=1e-12), name_k
    if conv.bias is not None:
        assert torch.allclose(kfac["0.bias"].to_dense(), bias, atol=1e-12)


def test_general_case_error_is_reported_and_small_for_single_position_layers(float64, capsys):
    """KFAC is an approximation for N > 1: report its error; biases stay exact.

    On this problem (N=32, 3-4-5-3 tanh MLP, seeds 0-2) the weight blocks have 0.09-0.54 relative
    Frobenius error (largest in the first layer), log det(H + I) within 1-25 %.
    """
    model = mlp()
    x = torch.randn(32, 3)
    kfac = compute_kfac(model, (x, torch.randint(0, 3, (32,))))
    dense = exact_ggn(model, x)
    layout = parameter_layout(model)
    report = {}
    for b in kfac:
        exact = block(dense, layout, b.params)
        exact_logdet = torch.linalg.slogdet(exact + torch.eye(exact.shape[0]))[1]
        report[b.name] = (
            relative_error(b.to_dense(), exact),
            float(b.logdet(1.0) / exact_logdet - 1),
        )
    print("KFAC-expand (Frobenius error, logdet error) per block, N=32 MLP:", report)
    for name, (err, logdet_err) in report.items():
        if name.endswith("bias"):
            assert err < 1e-12  # a bias of a single-position layer is exact
        else:
            assert err < 0.6 and abs(logdet_err) < 0.25, (name, err, logdet_err)


@pytest.mark.parametrize("backward", ["loop", "vmap"])
def test_backward_modes_and_direction_chunks_give_identical_factors(float64, backward):
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 4)
    )
    x, y = torch.randn(5, 2, 4, 4), torch.randint(0, 4, (5,))
    reference = compute_kfac(model, (x, y))
    tiny_chunks = KFACConfig(backward=backward, max_gradient_bytes=1)  # one direction per chunk
    for config in (KFACConfig(backward=backward), tiny_chunks):
        kfac = compute_kfac(model, (x, y), config=config)
        for b in reference:
            assert torch.allclose(kfac[b.name].to_dense(), b.to_dense(), atol=1e-12), b.name


def test_auto_backward_vectorises_only_models_made_of_known_friendly_modules(float64):
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(8, 5), nn.GELU(), nn.Linear(5, 3))
    cnn = nn.Sequential(nn.Conv2d(2, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())

    class Custom(nn.Module):  # its forward could call any functional op
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            return self.fc(x.flatten(1))

    assert resolve_backward(mlp, "auto") == "vmap"
    assert resolve_backward(cnn, "auto") == "loop"
    assert resolve_backward(Custom(), "auto") == "loop"
    assert resolve_backward(cnn, "vmap") == "vmap" and resolve_backward(mlp, "loop") == "loop"
    x, y = torch.randn(6, 2, 2, 2), torch.randint(0, 3, (6,))
    for ggn in ("exact", "mc"):
        auto = compute_kfac(mlp, (x, y), config=KFACConfig(ggn_type=ggn, seed=1))
        loop = compute_kfac(mlp, (x, y), config=KFACConfig(ggn_type=ggn, seed=1, backward="loop"))
        for b in loop:
            assert torch.allclose(auto[b.name].to_dense(), b.to_dense(), atol=1e-12), b.name
    with pytest.raises(ValueError, match="backward must be 'auto', 'loop' or 'vmap'"):
        KFACConfig(backward="batched")


@pytest.mark.parametrize("backward", ["loop", "vmap"])
def test_each_backward_pass_starts_with_the_previous_gradients_freed(monkeypatch, backward):
    """Gradients of a direction (chunk) are released before the next pass allocates its own.

    Held across the pass they doubled the live memory and made the next pass write to fresh
    pages: the CNN's exact pass ran 14 % slower (docs/benchmarks.md).
    """
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4))
    x, y = torch.randn(5, 2, 6, 6), torch.randint(0, 4, (5,))
    real_grad = torch.autograd.grad
    previous: list = []
    calls = 0

    def grad(*args, **kwargs):
        nonlocal calls
        alive = [r() for r in previous if r() is not None]
        assert not alive, f"pass {calls}: {len(alive)} gradients of the previous pass still held"
        out = real_grad(*args, **kwargs)
        previous[:] = [weakref.ref(g) for g in out]
        calls += 1
        return out

    monkeypatch.setattr(torch.autograd, "grad", grad)
    # exact: 3 directions; for vmap, one direction per chunk through max_gradient_bytes
    config = KFACConfig(backward=backward, max_gradient_bytes=1)
    kfac = compute_kfac(model, [(x, y), (x, y)], config=config)
    monkeypatch.setattr(torch.autograd, "grad", real_grad)
    assert calls == 6
    expected = compute_kfac(model, [(x, y), (x, y)], config=KFACConfig(backward=backward))
    for b in kfac:
        assert torch.allclose(b.to_dense(), expected[b.name].to_dense(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("approx", ["expand", "reduce"])
def test_linear_with_leading_dims_matches_the_sharing_definition(float64, approx):
    """Leading dims after the batch are weight-sharing positions (e.g. tokens)."""
    layer = nn.Linear(3, 4)
    model = nn.Sequential(layer, nn.Tanh(), nn.Flatten(), nn.Linear(5 * 4, 3))
    x, y = torch.randn(6, 5, 3), torch.randint(0, 3, (6,))
    kfac = compute_kfac(model, (x, y), config=KFACConfig(approx=approx))
    jac, f, _ = output_jacobian(model, layer, x)  # [N, C, R, D_out]
    lam = output_hessian(f, "classification")
    if approx == "expand":
        a_def = torch.einsum("nri,nrj->ij", x, x) / (6 * 5)
        b_def = torch.einsum("ncro,ncd,ndrp->op", jac, lam, jac)
    else:
        a_def = x.mean(1).T @ x.mean(1) / 6
        b_def = torch.einsum("nco,ncd,ndp->op", jac.sum(2), lam, jac.sum(2))
    b, a = kfac["0.weight"].factors
    assert torch.allclose(a.to_dense(), a_def, atol=1e-12)
    assert torch.allclose(b.to_dense(), b_def, atol=1e-12)
    assert torch.allclose(kfac["0.bias"].to_dense(), b_def, atol=1e-12)
