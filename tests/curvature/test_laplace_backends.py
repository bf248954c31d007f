"""Our KFAC agrees with laplace-torch's ASDL and curvlinops backends; our backend runs Laplace."""

import pytest
import torch
from oracles import block, exact_ggn, parameter_layout
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

laplace = pytest.importorskip("laplace")
from laplace import Laplace  # noqa: E402
from laplace.curvature import AsdlGGN, CurvlinopsGGN  # noqa: E402

from curvature.laplace_backend import KFACBackend  # noqa: E402

# ASDL (a dependency of laplace-torch) registers deprecated non-full backward hooks.
pytestmark = pytest.mark.filterwarnings("ignore:Using a non-full backward hook:FutureWarning")


def dense_entries(kron):
    out = []
    for factors in kron.kfacs:
        m = factors[0].contiguous()
        for f in factors[1:]:
            m = torch.kron(m, f.contiguous())
        out.append(m)
    return out


def mlp(bias=True):
    return nn.Sequential(nn.Linear(4, 5, bias=bias), nn.Tanh(), nn.Linear(5, 3, bias=bias))


def cnn(bias=True):
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=bias),
        nn.Tanh(),
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 3, bias=bias),
    )


MODELS = {
    "mlp": (mlp, (4,)),
    "mlp-no-bias": (lambda: mlp(False), (4,)),
    "cnn-stride": (cnn, (2, 5, 5)),
    "cnn-no-bias": (lambda: cnn(False), (2, 5, 5)),
}


def make_data(shape, likelihood, n=12):
    x = torch.randn(n, *shape)
    y = torch.randint(0, 3, (n,)) if likelihood == "classification" else torch.randn(n, 3)
    return x, y


@pytest.mark.parametrize("other", [AsdlGGN, CurvlinopsGGN], ids=["asdl", "curvlinops"])
@pytest.mark.parametrize("likelihood", ["classification", "regression"])
@pytest.mark.parametrize("name", list(MODELS))
def test_kron_factors_agree_with_laplace_backends(float64, other, likelihood, name):
    build, shape = MODELS[name]
    model = build()
    x, y = make_data(shape, likelihood)
    loss_ref, ref = other(model, likelihood).kron(x, y, N=30)
    loss, ours = KFACBackend(model, likelihood).kron(x, y, N=30)
    assert torch.allclose(loss, loss_ref, rtol=1e-10)
    assert len(ours.kfacs) == len(ref.kfacs)
    for i, (a, b) in enumerate(zip(dense_entries(ours), dense_entries(ref), strict=True)):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12 * b.abs().max()), (name, i)


@pytest.mark.parametrize("other", [AsdlGGN, CurvlinopsGGN], ids=["asdl", "curvlinops"])
@pytest.mark.parametrize("likelihood", ["classification", "regression"])
@pytest.mark.parametrize("name", ["mlp", "cnn-stride"])
def test_log_marginal_likelihood_agrees_with_laplace_backends(float64, other, likelihood, name):
    build, shape = MODELS[name]
    model = build()
    x, y = make_data(shape, likelihood, n=20)
    loader = DataLoader(TensorDataset(x, y), batch_size=7)  # several batches, uneven last one
    values = []
    for backend in (KFACBackend, other):
        la = Laplace(
            model,
            likelihood,
            subset_of_weights="all",
            hessian_structure="kron",
            backend=backend,
            sigma_noise=0.8 if likelihood == "regression" else 1.0,
        )
        la.fit(loader)
        prior = torch.linspace(0.5, 2.0, len(la.H.eigenvalues))  # per-tensor precisions
        values.append(la.log_marginal_likelihood(prior_precision=prior))
    assert torch.allclose(values[0], values[1], rtol=1e-5)


def test_circular_conv_agrees_with_the_exact_ggn_where_asdl_does_not(float64):
    """ASDL builds conv patches with zero padding even for circular convs."""
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(3, 3),
    )
    x, y = torch.randn(1, 2, 1, 1), torch.tensor([2])  # one datum, one position: KFAC is exact
    exact = block(
        exact_ggn(model, x),
        parameter_layout(model),
        [type("P", (), {"name": "0.weight", "start": 0, "stop": 54})()],
    )
    _, ours = KFACBackend(model, "classification").kron(x, y, N=1)
    _, asdl = AsdlGGN(model, "classification").kron(x, y, N=1)
    assert torch.allclose(dense_entries(ours)[0], exact, atol=1e-12)
    assert (dense_entries(asdl)[0] - exact).abs().max() > 0.1 * exact.abs().max()


def test_our_backend_handles_grouped_convs_by_densifying(float64):
    model = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Tanh(), nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.randn(1, 2, 3, 3), torch.tensor([0])
    _, ours = KFACBackend(model, "classification").kron(x, y, N=1)
    exact = exact_ggn(model, x)
    layout = parameter_layout(model)
    whole = type("P", (), {"name": "0.weight", "start": 0, "stop": 36})()
    expected = block(exact, layout, [whole])
    expected = expected * torch.block_diag(torch.ones(18, 18), torch.ones(18, 18))  # per group
    assert len(ours.kfacs[0]) == 1
    assert torch.allclose(ours.kfacs[0][0], expected, atol=1e-12)


def test_laplace_runs_on_a_registered_custom_layer(float64):
    """No laplace-torch backend can do this: a factored layer with block-diagonal factors."""
    from custom_layers import TinyFactoredLinear, registry

    from curvature import compute_kfac

    model = nn.Sequential(TinyFactoredLinear(2, 3, 4, 5), nn.Tanh(), nn.Flatten(), nn.Linear(15, 3))
    x, y = torch.randn(20, 2, 4), torch.randint(0, 3, (20,))
    la = Laplace(
        model,
        "classification",
        subset_of_weights="all",
        hessian_structure="kron",
        backend=KFACBackend,
        backend_kwargs={"registry": registry()},
    )
    la.fit(DataLoader(TensorDataset(x, y), batch_size=8))
    prior = torch.tensor([0.5, 2.0, 1.0, 3.0])  # per tensor: theta1, theta2, weight, bias
    kfac = compute_kfac(model, (x, y), registry=registry())
    precisions = dict(zip(kfac.names, prior, strict=True))
    la.prior_precision = prior
    assert torch.allclose(la.log_det_posterior_precision, kfac.logdet(precisions), rtol=1e-10)
    assert torch.isfinite(la.log_marginal_likelihood())
