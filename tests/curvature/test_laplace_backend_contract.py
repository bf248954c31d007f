"""KFACBackend honours laplace-torch's contract: mapping batches and per-call Kron options."""

from collections import UserDict

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

laplace = pytest.importorskip("laplace")
from laplace import KronLaplace, Laplace, marglik_training  # noqa: E402
from laplace.curvature import AsdlGGN, CurvlinopsGGN  # noqa: E402

from curvature import CurvatureError  # noqa: E402
from curvature.laplace_backend import KFACBackend  # noqa: E402

# ASDL (a dependency of laplace-torch) registers deprecated non-full backward hooks.
pytestmark = pytest.mark.filterwarnings("ignore:Using a non-full backward hook:FutureWarning")

KEYS = {"dict_key_x": "features", "dict_key_y": "target"}


class MappingModel(nn.Module):
    """An MLP that takes a Huggingface-style batch (``batch["features"]``) or a tensor."""

    def __init__(self, outputs=3):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, outputs))

    def forward(self, data):
        return self.net(data if isinstance(data, torch.Tensor) else data["features"])


class Rows(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"features": self.x[i], "target": self.y[i]}


def collate(items):
    """Stack per-datum dicts into one UserDict batch (a MutableMapping, not a dict)."""
    return UserDict({k: torch.stack([item[k] for item in items]) for k in items[0]})


def loaders(likelihood, n=17, batch_size=6, outputs=3):
    x = torch.randn(n, 4)
    y = torch.randint(0, outputs, (n,)) if likelihood != "regression" else torch.randn(n, outputs)
    return (
        DataLoader(Rows(x, y), batch_size=batch_size, collate_fn=collate),
        DataLoader(TensorDataset(x, y), batch_size=batch_size),
    )


def fitted(model, likelihood, loader, backend, **kwargs):
    la = Laplace(model, likelihood, backend=backend, **KEYS, **kwargs)
    la.fit(loader)
    return la


def posterior_matrix(la):
    H = la.H
    return H.to_matrix() if hasattr(H, "to_matrix") else H


@pytest.mark.parametrize("likelihood", ["classification", "regression", "reward_modeling"])
def test_kron_laplace_fits_mapping_batches(float64, likelihood):
    """A dict loader gives the fit of the same data as tensors, and curvlinops' on the dicts."""
    outputs = 2 if likelihood == "reward_modeling" else 3
    model = MappingModel(outputs)
    dicts, tensors = loaders(likelihood, outputs=outputs)
    kron = dict(subset_of_weights="all", hessian_structure="kron")
    ours = fitted(model, likelihood, dicts, KFACBackend, **kron)
    same = fitted(model, likelihood, tensors, KFACBackend, **kron)
    other = fitted(model, likelihood, dicts, CurvlinopsGGN, **kron)
    assert isinstance(ours, KronLaplace)
    assert torch.equal(ours.H.to_matrix(), same.H.to_matrix())
    assert torch.allclose(ours.H.to_matrix(), other.H.to_matrix(), rtol=1e-10, atol=1e-12)
    prior = torch.tensor([0.5, 1.0, 1.5, 2.0])
    marglik = ours.log_marginal_likelihood(prior)
    assert torch.equal(marglik, same.log_marginal_likelihood(prior))
    assert torch.allclose(marglik, other.log_marginal_likelihood(prior), rtol=1e-10)
    if likelihood == "reward_modeling":
        return
    batch = next(iter(dicts))
    kwargs = {"link_approx": "probit"} if likelihood == "classification" else {}
    on_dict = ours(batch, pred_type="glm", **kwargs)
    on_tensor = same(batch["features"], pred_type="glm", **kwargs)
    for a, b in zip(on_dict, on_tensor, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "weights, structure, other",
    [
        ("last_layer", "kron", AsdlGGN),
        ("all", "diag", AsdlGGN),  # inherited from laplace-torch's GGNInterface
        ("all", "full", CurvlinopsGGN),  # inherited from laplace-torch's GGNInterface
    ],
)
def test_other_structures_fit_mapping_batches(float64, weights, structure, other):
    model = MappingModel()
    dicts, tensors = loaders("classification")
    kwargs = dict(subset_of_weights=weights, hessian_structure=structure)
    ours = posterior_matrix(fitted(model, "classification", dicts, KFACBackend, **kwargs))
    same = posterior_matrix(fitted(model, "classification", tensors, KFACBackend, **kwargs))
    reference = posterior_matrix(fitted(model, "classification", dicts, other, **kwargs))
    assert torch.equal(ours, same)
    assert torch.allclose(ours, reference, rtol=1e-10, atol=1e-12)


def test_marglik_training_on_a_loader_of_dicts(float64):
    dicts, tensors = loaders("classification")
    runs = {}
    for name, backend, loader in [
        ("ours", KFACBackend, dicts),
        ("ours-tensors", KFACBackend, tensors),
        ("asdl", AsdlGGN, dicts),
    ]:
        torch.manual_seed(1)
        la, _, margliks, _ = marglik_training(
            MappingModel(), loader, "classification", "kron", backend=backend,
            n_epochs=2, n_hypersteps=2, **KEYS,
        )  # fmt: skip
        runs[name] = torch.tensor(margliks), la.prior_precision
    assert all(torch.equal(a, b) for a, b in zip(runs["ours"], runs["ours-tensors"], strict=True))
    assert all(
        torch.allclose(a, b, rtol=1e-10) for a, b in zip(runs["ours"], runs["asdl"], strict=True)
    )


def conv_model():
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 3)
    )


def kron_fit(model, x, y, backend=KFACBackend, backend_kwargs=None, options=None):
    la = KronLaplace(
        model, "classification", backend=backend, backend_kwargs=backend_kwargs,
        asdl_fisher_kwargs=options,
    )  # fmt: skip
    la.fit(DataLoader(TensorDataset(x, y), batch_size=4))
    return la.H.to_matrix()


def test_kfac_approx_option_selects_reduce_as_in_curvlinops(float64):
    model = conv_model()
    x, y = torch.randn(10, 2, 4, 4), torch.randint(0, 3, (10,))
    reduce = kron_fit(model, x, y, options={"kfac_approx": "reduce"})
    assert torch.equal(reduce, kron_fit(model, x, y, backend_kwargs={"approx": "reduce"}))
    curvlinops = kron_fit(model, x, y, CurvlinopsGGN, options={"kfac_approx": "reduce"})
    assert torch.allclose(reduce, curvlinops, rtol=1e-10, atol=1e-12 * curvlinops.abs().max())
    expand = kron_fit(model, x, y, options={"kfac_approx": "expand"})
    assert torch.equal(expand, kron_fit(model, x, y))
    assert not torch.allclose(reduce, expand, rtol=1e-3)


@pytest.mark.parametrize("samples_key", ["mc_samples", "n_mc_samples"])  # curvlinops, ASDL
def test_mc_samples_option_sets_the_monte_carlo_fisher(float64, samples_key):
    model = MappingModel()
    x, y = torch.randn(12, 4), torch.randint(0, 3, (12,))
    stochastic = {"stochastic": True}
    five = kron_fit(model, x, y, backend_kwargs=stochastic, options={samples_key: 5, "seed": 3})
    reference = {"ggn_type": "mc", "num_samples": 5, "seed": 3}
    assert torch.equal(five, kron_fit(model, x, y, backend_kwargs=reference))
    one = kron_fit(model, x, y, backend_kwargs=stochastic, options={samples_key: 1, "seed": 3})
    assert not torch.allclose(five, one)
    # the Monte-Carlo Fisher converges to the exact GGN with the number of samples
    exact = kron_fit(model, x, y)
    many = kron_fit(model, x, y, backend_kwargs=stochastic, options={samples_key: 500, "seed": 3})
    assert (many - exact).norm() < 0.2 * (one - exact).norm()


def test_per_call_options_do_not_stick_to_the_backend(float64):
    model = MappingModel()
    x, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    backend = KFACBackend(model, "classification")
    config = backend.config
    _, mc = backend.kron(x, y, N=6, ggn_type="mc", mc_samples=3)
    assert backend.config is config
    _, exact = backend.kron(x, y, N=6)
    _, reference = KFACBackend(model, "classification").kron(x, y, N=6)
    assert torch.equal(exact.to_matrix(), reference.to_matrix())
    assert not torch.allclose(mc.to_matrix(), exact.to_matrix())


def test_options_without_effect_at_their_defaults_are_accepted(float64):
    model = MappingModel()
    x, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    neutral = {"var": 1.0, "scale": 1.0, "ignore_index": -1, "fisher_attr": "F", "num_data": None}
    assert torch.equal(kron_fit(model, x, y, options=neutral), kron_fit(model, x, y))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"var": 2.0}, r"var=2.0 is not supported \(only var=1.0\).*sigma_noise"),
        ({"ignore_modules": ["net.0"]}, r"ignore_modules.*backend_kwargs=\{'exclude'"),
        ({"fisher_type": "mc"}, r"unsupported option 'fisher_type' \(use ggn_type=\)"),
        ({"bogus": 1}, r"unsupported option 'bogus'; it accepts \['approx', 'ggn_type'"),
        ({"kfac_approx": "average"}, r"kfac_approx.*approx must be 'expand' or 'reduce'"),
        ({"n_mc_samples": 0}, r"mc_samples must be >= 1"),
        ({"mc_samples": 5}, r"mc_samples=5 needs the Monte-Carlo Fisher: .*'stochastic': True"),
    ],
)
def test_options_we_cannot_honour_are_refused_with_the_alternative(options, message):
    x, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    with pytest.raises(CurvatureError, match=message):
        kron_fit(MappingModel(), x, y, options=options)


@pytest.mark.parametrize("structure", ["full", "diag"])
def test_inherited_full_and_diag_take_the_per_call_number_of_samples(float64, structure):
    """laplace-torch's torch.func GGN ignores mc_samples per call; ours passes it on."""
    model = MappingModel()
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    results = []
    for backend_samples, call in [(7, {}), (1, {"mc_samples": 7}), (1, {"n_mc_samples": 7})]:
        backend = KFACBackend(model, "classification", stochastic=True, num_samples=backend_samples)
        torch.manual_seed(5)
        results.append(getattr(backend, structure)(x, y, N=8, **call)[1])
        assert backend.num_samples == backend_samples
    torch.manual_seed(5)
    one = getattr(KFACBackend(model, "classification", stochastic=True), structure)(x, y)[1]
    assert torch.equal(results[0], results[1])
    assert torch.equal(results[0], results[2])
    assert not torch.allclose(results[0], one)
    exact = getattr(KFACBackend(model, "classification"), structure)
    with pytest.raises(CurvatureError, match=r"mc_samples=7 needs the Monte-Carlo Fisher"):
        exact(x, y, mc_samples=7)
    with pytest.raises(CurvatureError, match=r"only mc_samples applies .* not \['kfac_approx'\]"):
        exact(x, y, kfac_approx="reduce")


@pytest.mark.parametrize("structure", ["full", "diag"])
def test_subnetwork_laplace_uses_the_inherited_full_and_diag(float64, structure):
    model = MappingModel()
    x, y = torch.randn(12, 4), torch.randint(0, 3, (12,))
    indices = torch.tensor([0, 3, 7, 21, 30, 40])
    fits = []
    for backend in (KFACBackend, CurvlinopsGGN):
        la = Laplace(
            model, "classification", subset_of_weights="subnetwork", hessian_structure=structure,
            backend=backend, subnetwork_indices=indices,
        )  # fmt: skip
        la.fit(DataLoader(TensorDataset(x, y), batch_size=5))
        fits.append(la.H)
    assert fits[0].shape[0] == len(indices)
    assert torch.allclose(fits[0], fits[1], rtol=1e-10, atol=1e-14)


def test_kron_refuses_subnetwork_indices():
    model = MappingModel()
    backend = KFACBackend(model, "classification", subnetwork_indices=torch.tensor([0, 1]))
    with pytest.raises(CurvatureError, match=r"subnetwork.*hessian_structure='full' or 'diag'"):
        backend.kron(torch.randn(3, 4), torch.zeros(3, dtype=torch.long), N=3)


def test_frozen_tensors_are_left_out_of_the_kron_fit(float64):
    """Any pattern of frozen tensors (here a weight whose bias trains): the rest is unchanged."""
    model = MappingModel()
    x, y = torch.randn(12, 4), torch.randint(0, 3, (12,))
    full = kron_fit(model, x, y)
    model.net[0].weight.requires_grad_(False)
    part = kron_fit(model, x, y)
    keep = torch.arange(model.net[0].weight.numel(), full.shape[0])
    assert torch.equal(part, full[keep][:, keep])
