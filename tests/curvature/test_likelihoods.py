"""Output directions reproduce the output Hessian Λ (exactly, or in expectation for MC)."""

import pytest
import torch

from curvature import CrossEntropy, Gaussian, make_likelihood


def outer_sum(v):
    return torch.einsum("snc,snd->ncd", v, v)


@pytest.mark.parametrize("classes", [1, 2, 3, 10])
def test_exact_cross_entropy_directions_factor_the_softmax_hessian(float64, classes):
    f = torch.randn(7, classes) * 3
    f[0] = torch.tensor([50.0] + [-50.0] * (classes - 1))  # saturated softmax: p ≈ e_1
    v = CrossEntropy().output_directions(f, None, "exact")
    assert v.shape == (classes - 1, 7, classes)  # one backward pass fewer than C
    p = f.softmax(-1)
    lam = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    assert torch.allclose(outer_sum(v), lam, atol=1e-14)


def test_exact_gaussian_directions(float64):
    f = torch.randn(5, 3)
    v = Gaussian(sigma=0.5).output_directions(f, None, "exact")
    assert torch.allclose(outer_sum(v), torch.eye(3).expand(5, 3, 3) / 0.25)


@pytest.mark.parametrize("lik", [CrossEntropy(), Gaussian(sigma=0.7)], ids=["ce", "gauss"])
def test_monte_carlo_directions_are_unbiased(float64, lik):
    f = torch.randn(3, 4)
    gen = torch.Generator().manual_seed(1)
    mc = outer_sum(lik.output_directions(f, None, "mc", mc_samples=20000, generator=gen))
    exact = outer_sum(lik.output_directions(f, None, "exact"))
    assert (mc - exact).abs().max() < 0.05 * exact.abs().max()


def test_monte_carlo_is_reproducible_from_a_generator(float64):
    f = torch.randn(4, 5)
    draws = [
        CrossEntropy().output_directions(f, None, "mc", 3, torch.Generator().manual_seed(7))
        for _ in range(2)
    ]
    assert torch.equal(*draws)


def test_empirical_directions_are_the_loss_gradient(float64):
    f = torch.randn(4, 3, requires_grad=True)
    y = torch.tensor([0, 2, 1, 1])
    v = CrossEntropy().output_directions(f, y, "empirical")
    (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(f, y, reduction="sum"), f)
    assert torch.allclose(v[0], -grad)  # ∇_f log p(y | f)
    t = torch.randn(4, 3)
    v = Gaussian(sigma=2.0).output_directions(f, t, "empirical")
    (grad,) = torch.autograd.grad(-Gaussian(sigma=2.0).log_likelihood(f, t), f)
    assert torch.allclose(v[0], -grad)


def test_log_likelihoods(float64):
    f, y = torch.randn(4, 3), torch.tensor([0, 2, 1, 1])
    expected = torch.distributions.Categorical(logits=f).log_prob(y).sum()
    assert torch.allclose(CrossEntropy().log_likelihood(f, y), expected)
    t = torch.randn(4, 3)
    expected = torch.distributions.Normal(f, 0.3).log_prob(t).sum()
    assert torch.allclose(Gaussian(0.3).log_likelihood(f, t), expected)


def test_bad_labels_and_names_give_clear_errors():
    f = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        CrossEntropy().check_output(f, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="must be integers"):
        CrossEntropy().check_output(f, torch.zeros(4))
    with pytest.raises(ValueError, match=r"shape \[N\]"):
        CrossEntropy().check_output(f, torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="outputs"):
        Gaussian().check_output(f, torch.zeros(4))
    with pytest.raises(ValueError, match="unknown likelihood 'poisson'"):
        make_likelihood("poisson")
    with pytest.raises(ValueError, match="sigma must be positive"):
        Gaussian(sigma=0.0)


def test_gaussian_rescaling_matches_the_likelihood_at_the_other_noise(float64):
    """Σ(y - f)² recovered from log p at σ, log p and its σ-gradient at σ', the GGN's scale."""
    from curvature import compute_kfac

    f, y = torch.randn(6, 3), torch.randn(6, 3)
    fitted = Gaussian(0.7)
    log_lik = fitted.log_likelihood(f, y)
    assert torch.allclose(fitted.sum_of_squares(log_lik, y.numel()), ((y - f) ** 2).sum())
    sigma = torch.tensor(1.9, requires_grad=True)
    rescaled = fitted.rescaled(float(log_lik), y.numel(), sigma)
    direct = -0.5 * ((y - f) ** 2).sum() / sigma**2 - 0.5 * y.numel() * torch.log(
        2 * torch.pi * sigma**2
    )  # the density written out
    assert torch.allclose(rescaled, direct)
    (got,) = torch.autograd.grad(rescaled, sigma)
    (want,) = torch.autograd.grad(direct, sigma)
    assert torch.allclose(got, want)
    assert torch.allclose(rescaled, Gaussian(1.9).log_likelihood(f, y))
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    x = torch.randn(6, 4)
    at_fitted = compute_kfac(model, (x, y), "regression", sigma=0.7)
    at_other = compute_kfac(model, (x, y), "regression", sigma=1.9)
    scale = fitted.ggn_scale(1.9)
    for a, b in zip(at_fitted, at_other, strict=True):
        assert torch.allclose(a.to_dense() * scale, b.to_dense()), a.name


@pytest.mark.parametrize("lik", [CrossEntropy(), Gaussian(0.5)])
def test_empirical_fisher_without_targets_is_refused(lik):
    with pytest.raises(ValueError, match=f"empirical Fisher needs the targets y \\({lik.name}\\)"):
        lik.output_directions(torch.randn(3, 2), None, "empirical")
    with pytest.raises(ValueError, match="unknown ggn_type 'fisher'"):
        lik.output_directions(torch.randn(3, 2), None, "fisher")
