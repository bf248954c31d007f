"""The primal-dual core: the KKT toys of constrained and resilient learning (known optima).

Toy: :math:`\\min_\\gamma (\\gamma - c)^2` with plain gradient descent on :math:`\\gamma` and the
dual rules of :mod:`bayesym.selectors.constraints` (all step sizes 0.01, 3000 or 6000 steps,
float64).

* resilient, :math:`|\\gamma| \\le u`, :math:`c = 1`: KKT point
  :math:`\\gamma^\\star = u^\\star = 1/(1 + \\rho/2)`, :math:`\\lambda^\\star = \\rho u^\\star`;
* equality, :math:`\\gamma = 0`: :math:`\\lambda^\\star = 2c` (negative for :math:`c < 0`).

Tolerance ``TOL`` = 1e-6 on every coordinate (the iteration contracts geometrically; the step
counts put every error below 1e-7 on these toys).
"""

import pytest
import torch

from bayesym.selectors.constraints import ConstraintDuals, DualSettings

TOL = 1e-6


def descend(settings, target, steps=3000, lr=0.01, count=1):
    gamma = torch.ones(count, dtype=torch.float64, requires_grad=True)
    duals = ConstraintDuals(count, settings)
    target = torch.as_tensor(target, dtype=torch.float64)
    for _ in range(steps):
        objective = (gamma - target).square().sum() + duals.penalty(gamma)
        (grad,) = torch.autograd.grad(objective, gamma)
        with torch.no_grad():
            gamma -= lr * grad
        duals.step(gamma.detach())
    return gamma.detach(), duals


@pytest.mark.parametrize("rho", [0.5, 1.0, 2.0])
def test_resilient_toy_reaches_the_kkt_point(rho):
    settings = DualSettings("resilient", dual_lr=0.01, rho=rho, slack_lr=0.01)
    gamma, duals = descend(settings, 1.0, steps=6000)
    u_star = 1.0 / (1.0 + rho / 2.0)
    assert gamma.item() == pytest.approx(u_star, abs=TOL)
    assert duals.slacks.item() == pytest.approx(u_star, abs=TOL)
    assert duals.multipliers.item() == pytest.approx(rho * u_star, abs=TOL)


def test_resilient_toy_is_not_the_reference_rule():
    # the public code's update enforces |γ| <= 2u: (γ, u) = (0.8, 0.4) at ρ = 1
    gamma, duals = descend(DualSettings("resilient", rho=1.0), 1.0)
    assert abs(gamma.item() - 0.8) > 0.1 and abs(duals.slacks.item() - 0.4) > 0.1


@pytest.mark.parametrize("target", [1.0, -1.0])
def test_equality_toy_drives_gamma_to_zero_with_a_free_sign_multiplier(target):
    gamma, duals = descend(DualSettings("equality"), target)
    assert abs(gamma.item()) < TOL
    assert duals.multipliers.item() == pytest.approx(2.0 * target, abs=TOL)
    assert duals.multipliers.item() < 0 if target < 0 else duals.multipliers.item() > 0


def test_several_constraints_at_once_each_reach_their_own_optimum():
    gamma, duals = descend(DualSettings("equality"), [1.0, -0.5, 0.0], count=3)
    assert gamma.abs().max().item() < TOL
    torch.testing.assert_close(
        duals.multipliers, torch.tensor([2.0, -1.0, 0.0], dtype=torch.float64), atol=TOL, rtol=0
    )


def test_resilient_multiplier_stays_non_negative_on_an_inactive_constraint():
    # min (γ + 1)^2 s.t. |γ| <= u: the unconstrained optimum γ = -1 violates it, so the
    # optimum is γ* = -u*, u* = 2/3, λ* = 2/3 at ρ = 1; with the sign of γ flipped λ must
    # still be non-negative (|γ| is what the constraint sees).
    gamma, duals = descend(DualSettings("resilient"), -1.0)
    assert gamma.item() == pytest.approx(-2.0 / 3.0, abs=TOL)
    assert duals.multipliers.item() == pytest.approx(2.0 / 3.0, abs=TOL)
    # nothing to pay for: the objective is minimised at γ = 0, λ and u never leave 0
    gamma, duals = descend(DualSettings("resilient"), 0.0, steps=2000)
    assert duals.multipliers.min().item() >= 0.0 and duals.slacks.min().item() >= 0.0
    assert abs(gamma.item()) < 1e-3 and duals.multipliers.item() < 1e-3


def test_adam_dual_option_only_approaches_the_equality_optimum():
    # Adam's steps do not shrink with the violation: γ and λ keep oscillating around the
    # optimum, so plain ascent is the default
    adam, duals = descend(DualSettings("equality", dual_optimizer="adam"), 1.0, steps=4000)
    assert abs(adam.item()) < 0.05 and 1.0 < duals.multipliers.item() < 3.0
    plain, _ = descend(DualSettings("equality"), 1.0, steps=4000)
    assert abs(plain.item()) < abs(adam.item()) / 100


def test_lagrangian_value_and_checkpoint_round_trip():
    duals = ConstraintDuals(2, DualSettings("resilient", rho=2.0))
    gamma = torch.tensor([0.5, -1.0], dtype=torch.float64)
    for _ in range(3):
        duals.step(gamma)
    lam, u = duals.multipliers, duals.slacks
    expected = 1.5 + float((lam * (gamma.abs() - u)).sum()) + float(u.square().sum())
    assert duals.lagrangian(1.5, gamma) == pytest.approx(expected, abs=1e-12)
    other = ConstraintDuals(2, DualSettings("resilient", rho=2.0))
    other.load_state_dict(duals.state_dict())
    duals.step(gamma)
    other.step(gamma)
    assert torch.equal(duals.multipliers, other.multipliers) and torch.equal(
        duals.slacks, other.slacks
    )


def test_bad_settings_and_shapes_are_refused():
    with pytest.raises(ValueError, match="constraint must be"):
        DualSettings("inequality")
    with pytest.raises(ValueError, match="dual_lr must be positive"):
        DualSettings(dual_lr=0.0)
    with pytest.raises(ValueError, match="dual_optimizer"):
        DualSettings(dual_optimizer="sgd")
    with pytest.raises(ValueError, match="count must be a positive int"):
        ConstraintDuals(0)
    with pytest.raises(ValueError, match="expected gamma of shape"):
        ConstraintDuals(2).step(torch.zeros(3))


@pytest.mark.parametrize("rho", [1.0, 2.0])
def test_the_augmented_lagrangian_keeps_the_kkt_points(rho):
    settings = DualSettings("resilient", rho=rho, augmentation=1.0)
    gamma, duals = descend(settings, 1.0, steps=6000)
    u_star = 1.0 / (1.0 + rho / 2.0)
    assert gamma.item() == pytest.approx(u_star, abs=TOL)
    assert duals.slacks.item() == pytest.approx(u_star, abs=TOL)
    assert duals.multipliers.item() == pytest.approx(rho * u_star, abs=TOL)


def test_the_augmented_lagrangian_keeps_the_equality_kkt_point():
    gamma, duals = descend(DualSettings("equality", augmentation=1.0), -1.0, steps=6000)
    assert abs(gamma.item()) < TOL and duals.multipliers.item() == pytest.approx(-2.0, abs=TOL)
