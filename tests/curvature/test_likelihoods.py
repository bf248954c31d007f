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
