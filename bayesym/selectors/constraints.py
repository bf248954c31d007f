r"""Constrained learning by primal-dual steps: equality and resilient constraints on scalars.

The constrained variable is a vector :math:`\gamma \in \mathbb{R}^m` (in ACE, one homotopy
coefficient per layer); the objective :math:`\ell(\theta, \gamma)` is any differentiable loss.

**Equality** (:math:`\gamma_i = 0` for every :math:`i`). Lagrangian

.. math:: L(\theta, \gamma, \lambda) = \ell + \sum_i \lambda_i \gamma_i,

with multipliers :math:`\lambda \in \mathbb{R}^m` free in sign. The dual step is plain ascent
on :math:`L`: :math:`\lambda \leftarrow \lambda + \eta_d\,\gamma`.

**Resilient** (Hounie et al., resilient constrained learning: :math:`|\gamma_i| \le u_i` with
a learned slack :math:`u \ge 0` at cost :math:`\tfrac{\rho}{2}\lVert u\rVert^2`). Lagrangian

.. math:: L(\theta, \gamma, u, \lambda) = \ell + \tfrac{\rho}{2}\lVert u\rVert^2
          + \sum_i \lambda_i (|\gamma_i| - u_i), \qquad \lambda \ge 0.

Per step the slack descends, :math:`u \leftarrow [u - \eta_u(\rho u - \lambda)]_+`, and the
multipliers ascend and are projected, :math:`\lambda \leftarrow [\lambda + \eta_d(|\gamma| -
u)]_+` (both from the values before the step). At a KKT point :math:`u^\star =
\lambda^\star/\rho`: :math:`\rho` prices relaxation, :math:`u_i` is the tolerance the data buy
for constraint :math:`i`.

**Augmented Lagrangian** (``augmentation`` :math:`c > 0`, the method of multipliers). When the
objective hardly depends on :math:`\gamma` (a network can rescale its weights around a
homotopy coefficient), the bilinear term :math:`\lambda_i\gamma_i` makes primal-dual steps an
undamped oscillator: :math:`\gamma` and :math:`\lambda` circle the optimum instead of reaching
it. Adding :math:`\tfrac{c}{2}\sum_i\gamma_i^2` (equality) or
:math:`\tfrac{c}{2}\sum_i[|\gamma_i| - u_i]_+^2` (resilient; the slack step then also descends
it) damps the circling; it is zero on the feasible set, so the KKT points, and the dual
updates above, are unchanged.

The primal step (on :math:`\theta` and :math:`\gamma`, by the caller's optimiser) descends
:math:`\ell +` :meth:`ConstraintDuals.penalty`, the part of :math:`L` that depends on
:math:`\gamma` (:math:`\sum_i\lambda_i\gamma_i` or :math:`\sum_i\lambda_i|\gamma_i|`, with
:math:`\lambda` constant). ``dual_optimizer="adam"`` replaces the plain multiplier ascent by
Adam on :math:`-L` (ACE's public code does this); it is offered for parity only, its steps
do not scale with the violation.

Example (the equality toy :math:`\min(\gamma - 1)^2` s.t. :math:`\gamma = 0`, whose KKT point
is :math:`\gamma^\star = 0`, :math:`\lambda^\star = 2`):

    >>> import torch
    >>> gamma = torch.nn.Parameter(torch.ones(1))
    >>> duals = ConstraintDuals(1, DualSettings("equality", dual_lr=0.05))
    >>> opt = torch.optim.SGD([gamma], lr=0.05)
    >>> for _ in range(3000):
    ...     opt.zero_grad()
    ...     ((gamma - 1).square().sum() + duals.penalty(gamma)).backward()
    ...     opt.step()
    ...     duals.step(gamma.detach())
    >>> round(gamma.item(), 4) + 0.0, round(duals.multipliers.item(), 4)
    (0.0, 2.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from bayesym.checks import is_positive_int
from bayesym.selectors.config_checks import check_non_negative, check_one_of, check_positive

__all__ = ["ConstraintDuals", "DualSettings"]

ConstraintKind = Literal["equality", "resilient"]


@dataclass(frozen=True)
class DualSettings:
    r"""How the multipliers (and slacks) of :class:`ConstraintDuals` move.

    Attributes:
        constraint: ``"equality"`` (:math:`\gamma = 0`, :math:`\lambda` free in sign) or
            ``"resilient"`` (:math:`|\gamma| \le u`, :math:`\lambda \ge 0`, slack learned).
        dual_lr: :math:`\eta_d`, step size of the multipliers.
        rho: :math:`\rho`, price of the slack (resilient only).
        slack_lr: :math:`\eta_u`, step size of the slack (resilient only).
        dual_optimizer: ``"ascent"`` (default: :math:`\lambda + \eta_d\,\mathrm{slack}`) or
            ``"adam"`` (Adam on :math:`-L` with learning rate :math:`\eta_d`; parity with
            ACE's public code only).
        augmentation: :math:`c \ge 0` of the augmented Lagrangian (module docstring;
            0: the plain Lagrangian).
    """

    constraint: ConstraintKind = "equality"
    dual_lr: float = 1e-2
    rho: float = 1.0
    slack_lr: float = 1e-2
    dual_optimizer: Literal["ascent", "adam"] = "ascent"
    augmentation: float = 0.0

    def __post_init__(self) -> None:
        check_one_of(self, "constraint", ("equality", "resilient"))
        check_one_of(self, "dual_optimizer", ("ascent", "adam"))
        check_positive(self, "dual_lr", "rho", "slack_lr")
        check_non_negative(self, "augmentation")


class ConstraintDuals:
    r"""Multipliers :math:`\lambda` (and slacks :math:`u`) of :math:`m` scalar constraints.

    See the module docstring for the Lagrangians and the update rules. :math:`\lambda` starts
    at 0, :math:`u` at 0 (float64 throughout, on the CPU).

    Args:
        count: :math:`m`, the number of constrained scalars.
        settings: the update rule.

    Attributes:
        multipliers: ``[m]`` :math:`\lambda`.
        slacks: ``[m]`` :math:`u` (zeros, and unused, for equality).
    """

    def __init__(self, count: int, settings: DualSettings | None = None) -> None:
        if not is_positive_int(count):
            raise ValueError(f"ConstraintDuals: count must be a positive int, got {count!r}")
        self.settings = settings or DualSettings()
        self.count = count
        self.multipliers = torch.zeros(count, dtype=torch.float64)
        self.slacks = torch.zeros(count, dtype=torch.float64)
        self.steps = 0
        self._adam_m = torch.zeros(count, dtype=torch.float64)
        self._adam_v = torch.zeros(count, dtype=torch.float64)

    @property
    def resilient(self) -> bool:
        """Whether the constraint is the resilient one."""
        return self.settings.constraint == "resilient"

    def _check(self, gamma: Tensor) -> Tensor:
        if gamma.shape != (self.count,):
            raise ValueError(
                f"ConstraintDuals: expected gamma of shape [{self.count}], got {list(gamma.shape)}"
            )
        return gamma

    def violation(self, gamma: Tensor) -> Tensor:
        r"""``[m]`` the constraint function: :math:`\gamma` (equality) or :math:`|\gamma| - u`."""
        gamma = self._check(gamma).detach().double().cpu()
        return gamma.abs() - self.slacks if self.resilient else gamma

    def penalty(self, gamma: Tensor) -> Tensor:
        r"""The :math:`\gamma`-dependent part of :math:`L` for the primal step (λ constant).

        :math:`\sum_i\lambda_i\gamma_i` (equality) or :math:`\sum_i\lambda_i|\gamma_i|`
        (resilient), plus the augmentation :math:`\tfrac{c}{2}\sum_i\gamma_i^2` or
        :math:`\tfrac{c}{2}\sum_i[|\gamma_i| - u_i]_+^2`; a scalar on ``gamma``'s device and
        dtype, differentiable in ``gamma``.
        """
        gamma = self._check(gamma)
        lam = self.multipliers.to(device=gamma.device, dtype=gamma.dtype)
        value = gamma.abs() if self.resilient else gamma
        penalty = (lam * value).sum()
        if self.settings.augmentation > 0:
            if self.resilient:
                value = (value - self.slacks.to(device=gamma.device, dtype=gamma.dtype)).clamp_min(
                    0
                )
            penalty = penalty + 0.5 * self.settings.augmentation * value.square().sum()
        return penalty

    def lagrangian(self, objective: Tensor | float, gamma: Tensor) -> float:
        r""":math:`L` at the current :math:`\lambda, u` for an objective value and ``gamma``."""
        violation = self.violation(gamma)
        value = float(objective) + float((self.multipliers * violation).sum())
        if self.resilient:
            value += 0.5 * self.settings.rho * float(self.slacks.square().sum())
            violation = violation.clamp_min(0)
        return value + 0.5 * self.settings.augmentation * float(violation.square().sum())

    def step(self, gamma: Tensor) -> None:
        r"""One dual step (and slack step) at the current ``gamma`` (detached).

        Slack and multipliers both move from the values before the step.
        """
        slack = self.violation(gamma)
        lam = self.multipliers
        if self.resilient:
            descent = self.settings.rho * self.slacks - lam
            descent = descent - self.settings.augmentation * slack.clamp_min(0)
            self.slacks = (self.slacks - self.settings.slack_lr * descent).clamp_min(0.0)
        lam = lam + self._ascent(slack)
        self.multipliers = lam.clamp_min(0.0) if self.resilient else lam
        self.steps += 1

    def _ascent(self, slack: Tensor) -> Tensor:
        """The multiplier increment for the constraint values ``slack``."""
        if self.settings.dual_optimizer == "ascent":
            return self.settings.dual_lr * slack
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        t = self.steps + 1
        self._adam_m = beta1 * self._adam_m + (1 - beta1) * slack
        self._adam_v = beta2 * self._adam_v + (1 - beta2) * slack.square()
        m_hat = self._adam_m / (1 - beta1**t)
        v_hat = self._adam_v / (1 - beta2**t)
        return self.settings.dual_lr * m_hat / (v_hat.sqrt() + eps)

    def state_dict(self) -> dict[str, Any]:
        """Multipliers, slacks, step count and Adam moments (for checkpoints)."""
        return {
            "multipliers": self.multipliers.clone(),
            "slacks": self.slacks.clone(),
            "steps": self.steps,
            "adam_m": self._adam_m.clone(),
            "adam_v": self._adam_v.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`."""
        multipliers = torch.as_tensor(state["multipliers"], dtype=torch.float64)
        if multipliers.shape != (self.count,):
            raise ValueError(
                f"ConstraintDuals: checkpoint has {multipliers.numel()} multipliers, "
                f"expected {self.count}"
            )
        self.multipliers = multipliers.clone()
        self.slacks = torch.as_tensor(state["slacks"], dtype=torch.float64).clone()
        self.steps = int(state["steps"])
        self._adam_m = torch.as_tensor(state["adam_m"], dtype=torch.float64).clone()
        self._adam_v = torch.as_tensor(state["adam_v"], dtype=torch.float64).clone()
