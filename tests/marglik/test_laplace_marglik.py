"""The Laplace marglik vs its dense term-by-term formula; its gradients vs finite differences."""

import math

import pytest
import torch
from torch import nn

from bayesym.marglik import BlockLayout, effective_parameters_per_group, log_marginal_likelihood
from bayesym.priors import GaussianPrior
from curvature import compute_kfac


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)
    )


def layout(model):
    return [(n, p.numel()) for n, p in model.named_parameters()]


def dense_marglik(kfac, prior, model, sigma=None):
    """log p(D|θ) + log p(θ) + P/2 log 2π - ½ log det(H + P), all assembled densely."""
    h = kfac.to_dense(layout(model))
    theta = torch.cat([p.detach().flatten() for p in model.parameters()])
    delta = torch.cat(
        [
            prior.precisions[prior.group_index[n]].expand(p.numel())
            for n, p in model.named_parameters()
        ]
    )
    log_lik = kfac.log_likelihood
    if sigma is not None:
        # recompute the Gaussian log likelihood and curvature at the new noise level directly
        x, y = model._data
        f = model(x).detach()
        log_lik = torch.distributions.Normal(f, sigma).log_prob(y).sum()
        h = h * kfac.likelihood.sigma**2 / sigma**2
    p = theta.numel()
    log_prior = (
        0.5 * delta.log().sum() - 0.5 * (delta * theta**2).sum() - 0.5 * p * math.log(2 * math.pi)
    )
    laplace = 0.5 * p * math.log(2 * math.pi) - 0.5 * torch.linalg.slogdet(h + torch.diag(delta))[1]
    return log_lik + log_prior + laplace


@pytest.mark.parametrize("structure", ["path", "layer", "tensor", "scalar"])
def test_marglik_equals_dense_term_by_term_formula(float64, structure):
    model = small_cnn()
    x, y = torch.randn(6, 1, 4, 4), torch.randint(0, 3, (6,))
    kfac = compute_kfac(model, (x, y))
    prior = GaussianPrior(model, structure)
    with torch.no_grad():
        prior.log_precision.copy_(torch.linspace(-1.0, 2.0, len(prior.groups)))
    ours = log_marginal_likelihood(kfac, prior, model)
    assert torch.allclose(ours, dense_marglik(kfac, prior, model), rtol=1e-10)


def test_regression_marglik_with_noise_equals_dense_formula(float64):
    model = small_cnn()
    x, y = torch.randn(6, 1, 4, 4), torch.randn(6, 3)
    model._data = (x, y)
    kfac = compute_kfac(model, (x, y), "regression", sigma=0.7)
    prior = GaussianPrior(model, "tensor", init_precision=2.0)
    sigma = torch.tensor(0.45)
    ours = log_marginal_likelihood(kfac, prior, model, sigma=sigma)
    assert torch.allclose(ours, dense_marglik(kfac, prior, model, sigma=sigma), rtol=1e-10)
    # evaluating at the fitted noise equals not passing sigma at all
    assert torch.allclose(
        log_marginal_likelihood(kfac, prior, model, sigma=0.7),
        log_marginal_likelihood(kfac, prior, model),
        rtol=1e-12,
    )


def test_marglik_gradients_pass_gradcheck(float64):
    model = small_cnn()
    x, y = torch.randn(6, 1, 4, 4), torch.randn(6, 3)
    kfac = compute_kfac(model, (x, y), "regression", sigma=0.7)
    prior = GaussianPrior(model, "tensor")

    rho = torch.linspace(-0.5, 1.0, len(prior.groups)).requires_grad_()
    log_sigma = torch.tensor(-0.3, requires_grad=True)

    def through_prior(rho, log_sigma):
        saved = prior.log_precision
        try:
            del prior.log_precision
            prior.log_precision = rho
            return log_marginal_likelihood(kfac, prior, model, sigma=log_sigma.exp())
        finally:
            del prior.log_precision
            prior.log_precision = saved

    assert torch.autograd.gradcheck(through_prior, (rho, log_sigma))


def test_uncovered_parameters_contribute_prior_only(float64):
    model = small_cnn()
    x, y = torch.randn(6, 1, 4, 4), torch.randint(0, 3, (6,))
    prior = GaussianPrior(model, "tensor")
    full = compute_kfac(model, (x, y))
    partial = compute_kfac(model, (x, y), exclude=["0.bias"])
    # zero curvature for the conv bias: its block is δ I; dense formula with H_bias = 0
    h = full.to_dense(layout(model))
    bias = slice(18, 20)
    h[bias, :] = 0
    h[:, bias] = 0
    delta = torch.ones(h.shape[0])
    theta = torch.cat([p.detach().flatten() for p in model.parameters()])
    expected = (
        partial.log_likelihood
        - 0.5 * (theta**2).sum()
        - 0.5 * torch.linalg.slogdet(h + torch.diag(delta))[1]
    )
    assert torch.allclose(log_marginal_likelihood(partial, prior, model), expected, rtol=1e-10)


def test_parameter_without_prior_is_an_error():
    model = small_cnn()
    x, y = torch.randn(6, 1, 4, 4), torch.randint(0, 3, (6,))
    prior = GaussianPrior(model, exclude=["3.bias"])
    with pytest.raises(ValueError, match=r"covers '3\.bias', which has no prior"):
        log_marginal_likelihood(compute_kfac(model, (x, y)), prior, model)


def test_a_prebuilt_block_layout_gives_the_same_values_without_rebuilding_it(float64, monkeypatch):
    """The hyper step builds the block -> group layout once and passes it to every evaluation."""
    model = small_cnn()
    x, y = torch.randn(6, 1, 4, 4), torch.randn(6, 3)
    partial = compute_kfac(model, (x, y), "regression", sigma=0.7, exclude=["0.bias"])
    prior = GaussianPrior(model, "tensor")
    with torch.no_grad():
        prior.log_precision.copy_(torch.linspace(-1.0, 2.0, len(prior.groups)))
    sigma = torch.tensor(0.45)
    built = BlockLayout.of(partial, prior)
    assert built.groups.tolist() == prior.block_groups(partial)
    assert built.uncovered.tolist() == [0, 2, 0, 0]  # the excluded conv bias
    expected_lml = log_marginal_likelihood(partial, prior, model, sigma=sigma)
    expected_gamma = effective_parameters_per_group(partial, prior, sigma=sigma)

    def unexpected(*args, **kwargs):
        raise AssertionError("the layout was rebuilt")

    monkeypatch.setattr(GaussianPrior, "block_groups", unexpected)
    lml = log_marginal_likelihood(partial, prior, model, sigma=sigma, layout=built)
    gamma = effective_parameters_per_group(partial, prior, sigma=sigma, layout=built)
    assert torch.equal(lml, expected_lml)
    assert all(torch.equal(gamma[k], v) for k, v in expected_gamma.items())


def test_a_block_layout_of_another_kfac_or_prior_is_refused(float64):
    """Even with the same block structure: the layout holds its own fit's log likelihood."""
    model = small_cnn()
    x, y = torch.randn(6, 1, 4, 4), torch.randint(0, 3, (6,))
    prior = GaussianPrior(model, "tensor")
    kfac = compute_kfac(model, (x, y))
    same_structure = compute_kfac(model, (2 * x, y))
    layout = BlockLayout.of(same_structure, prior)
    with pytest.raises(ValueError, match="built for another KFAC"):
        log_marginal_likelihood(kfac, prior, model, layout=layout)
    with pytest.raises(ValueError, match="built for another prior"):
        effective_parameters_per_group(
            same_structure, GaussianPrior(model, "tensor"), layout=layout
        )
