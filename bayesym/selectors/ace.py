r"""ACE: constrained learning over homotopic layers (Manolache, Chamon & Niepert).

Every selectable layer of the space's homotopic network
(:meth:`~bayesym.selectors.spaces.SearchSpace.homotopic_network`) is a
:class:`~bayesym.layers.HomotopicLayer` :math:`f_i = f_{eq,i} + \gamma_i f_{neq,i}` with
:math:`\gamma_i = 1` at the start. Training is a primal-dual method on the Lagrangian of
:mod:`bayesym.selectors.constraints` over the vector :math:`\gamma \in \mathbb{R}^m` of the
network's :math:`m` homotopy coefficients:

* ``ace-eq`` (:class:`ACEEqualitySelector`): :math:`\min \ell` s.t. :math:`\gamma_i = 0`;
  :math:`\lambda_i` free in sign. ACE works as annealing: :math:`\gamma_i` rises where
  breaking the symmetry lowers the loss and :math:`\lambda_i` integrates the violation until
  :math:`\gamma_i \to 0`; a large :math:`|\lambda_i|` flags a layer whose symmetry the data
  resist. The returned network is the *equivariant projection* (every :math:`\gamma := 0`,
  :func:`~bayesym.layers.equivariant_projection`), exactly as equivariant as its
  :math:`f_{eq}` paths.
* ``ace-resilient`` (:class:`ACEResilientSelector`): :math:`\min \ell +
  \tfrac{\rho}{2}\lVert u\rVert^2` s.t. :math:`|\gamma_i| \le u_i`, :math:`\lambda \ge 0`; the
  slack :math:`u_i` is the non-equivariance layer :math:`i` is allowed, learned at price
  :math:`\rho`. The returned network is the trained one, :math:`\gamma` as learned.

Per mini-batch: one primal step on the mean cross-entropy plus the prior term
:math:`\tfrac{1}{2N}\sum_g\delta_g\lVert\theta_g\rVert^2` (a fixed unit prior on the
weights as the static baselines; never on :math:`\gamma`) plus
:meth:`~bayesym.selectors.constraints.ConstraintDuals.penalty` (the Lagrangian's
:math:`\gamma` terms, augmented by :math:`\tfrac{c}{2}\lVert\cdot\rVert^2` by default) —
Adam with a cosine-annealed learning rate on the weights, as the static baselines, and plain
gradient descent with a constant step on :math:`\gamma` — then one dual step (plain ascent
by default) at the new :math:`\gamma`. The defaults depart from ACE's public code (one Adam
for weights and :math:`\gamma`, Adam on :math:`\lambda`, no augmentation), whose steps keep
:math:`\gamma` and :math:`\lambda` circling the optimum when the loss hardly depends on
:math:`\gamma`; ``gamma_optimizer="adam"``, ``dual_optimizer="adam"`` and
``augmentation=0`` restore it.

**Step sizes.** With step :math:`\alpha` on :math:`\gamma`, dual step :math:`\eta_d` and
augmentation :math:`c`, the linearised primal-dual iteration near a KKT point is an oscillator
of angular frequency :math:`\sqrt{\alpha\eta_d}` per step, critically damped at
:math:`c \approx 2\sqrt{\eta_d/\alpha}`; :math:`1/\sqrt{\alpha\eta_d}` steps is the time
scale on which the constraint is enforced. ``ace-eq`` defaults to a fast one (:math:`\alpha
= 10^{-2}`, :math:`\eta_d = 10^{-2}`, :math:`c = 2`, critically damped: about 100
steps), so that
:math:`\gamma` reaches 0 within short runs; ``ace-resilient`` to a slow one
(:math:`\eta_d = 10^{-3}`, :math:`c = 0.5`: about 300 steps), so that the layers have time
to show which non-equivariance the loss pays for before the multipliers price it, with the
slack step :math:`\eta_u = 10^{-2}` so that :math:`u` follows :math:`\lambda/\rho`.

**Read-out.** One :class:`~bayesym.selectors.base.LayerChoice` per homotopic layer: ``"eq"``
when the returned layer's :math:`|\gamma_i|` is below ``gamma_tolerance``, else
``"eq+neq"``; scores ``gamma`` (trained value), ``abs_gamma``, ``lambda`` and ``u``. The
history holds per epoch :math:`\gamma`, :math:`\lambda` and :math:`u` per layer, and the
validation metrics of both the trained network and its equivariant projection (ACE's "dual
evaluation"); :func:`~bayesym.selectors.ace_figure.plot_ace_history` plots them, into
``ace_history.png`` of the run directory.

**Cost.** :math:`E` epochs of :math:`N` image passes (the dual steps touch no image); with
``Budget(epochs=B)``, :math:`E = \lfloor BN/N\rfloor`, else ``epochs``. A run directory holds
an atomic checkpoint after every epoch (weights, optimiser, schedule, multipliers, slacks,
meter, history); a killed run resumes to the same result.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from tqdm.auto import tqdm

from bayesym.backbones.initialisation import scale_to_unit_moment
from bayesym.data.image_dataset import ImageDataset
from bayesym.layers.homotopic import (
    HOMOTOPY_PARAMETER_NAME,
    HomotopicLayer,
    equivariant_projection,
    homotopy_parameters,
)
from bayesym.marglik.checkpoint import load_checkpoint, save_checkpoint
from bayesym.priors import GaussianPrior
from bayesym.seeds import indexed_seed
from bayesym.selectors.ace_figure import plot_ace_history
from bayesym.selectors.base import LayerChoice, SelectionResult, SelectionRun, Selector
from bayesym.selectors.budget import BudgetMeter
from bayesym.selectors.config_checks import (
    check_fields,
    check_one_of,
    check_positive,
    check_positive_int,
)
from bayesym.selectors.constraints import ConstraintDuals, DualSettings
from bayesym.selectors.spaces.base import DataShape, SearchSpace
from bayesym.selectors.training import evaluate_model, train_epochs

__all__ = [
    "ACEEqualityConfig",
    "ACEEqualitySelector",
    "ACEResilientConfig",
    "ACEResilientSelector",
    "equivariant_unit_moment",
]

CHECKPOINT = "ace_checkpoint.pt"
"""File name of the per-epoch checkpoint in a run directory."""

FIGURE = "ace_history.png"
"""File name of the figure of γ, λ and u per layer (:mod:`~bayesym.selectors.ace_figure`)."""


@dataclass(frozen=True)
class _ACEConfig:
    """Settings shared by both ACE selectors (see the subclasses)."""

    epochs: int = 40
    batch_size: int = 16
    lr: float = 1e-3
    lr_min: float = 0.0
    gamma_lr: float = 0.01
    gamma_optimizer: str = "sgd"
    prior_precision: float = 1.0
    gamma_init: float = 1.0
    dual_lr: float = 1e-3
    dual_optimizer: Literal["ascent", "adam"] = "ascent"
    augmentation: float = 0.5
    gamma_tolerance: float = 1e-3
    init: str = "equivariant"
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive_int(self, "epochs", "batch_size")
        check_positive(self, "lr", "prior_precision", "gamma_tolerance", "gamma_lr")
        check_one_of(self, "gamma_optimizer", ("sgd", "adam"))
        check_fields(self, ("lr_min",), lambda v: 0 <= v <= self.lr, "must lie in [0, lr]")
        check_one_of(self, "init", ("equivariant", "space"))
        check_fields(self, ("gamma_init",), math.isfinite, "must be finite")
        self.duals()  # checks the dual settings

    def duals(self) -> DualSettings:
        """The dual update rule."""
        return DualSettings(
            "equality",
            dual_lr=self.dual_lr,
            dual_optimizer=self.dual_optimizer,
            augmentation=self.augmentation,
        )


@dataclass(frozen=True)
class ACEEqualityConfig(_ACEConfig):
    r"""Configuration of :class:`ACEEqualitySelector` (module docstring).

    Attributes:
        epochs: epochs when the budget sets none.
        batch_size: mini-batch size.
        lr: initial Adam learning rate of the weights (cosine-annealed to ``lr_min``).
        lr_min: final learning rate of the weights.
        gamma_lr: learning rate of :math:`\gamma` (constant).
        gamma_optimizer: ``"sgd"`` (plain gradient descent on the Lagrangian in
            :math:`\gamma`) or ``"adam"`` (as ACE's public code, one Adam for everything;
            its momentum makes the primal-dual circling grow).
        prior_precision: precision :math:`\delta` of the fixed Gaussian prior on the weights
            (the static baselines' weight decay; :math:`\gamma` has none).
        gamma_init: initial :math:`\gamma` of every layer.
        dual_lr: :math:`\eta_d` of the multipliers (per mini-batch).
        dual_optimizer: ``"ascent"`` or ``"adam"`` (parity with ACE's public code).
        augmentation: :math:`c` of the augmented Lagrangian (damps the primal-dual
            circling, :mod:`bayesym.selectors.constraints`; 0: the plain Lagrangian).
        gamma_tolerance: a layer counts as equivariant (``"eq"``) below this :math:`|\gamma|`.
        init: ``"equivariant"`` (default: :func:`equivariant_unit_moment` after the space's
            initialisation) or ``"space"`` (the space's initialisation as it is).
        seed: seed of initialisation and batch order.
    """

    dual_lr: float = 1e-2
    augmentation: float = 2.0


@dataclass(frozen=True)
class ACEResilientConfig(_ACEConfig):
    r"""Configuration of :class:`ACEResilientSelector`: :class:`ACEEqualityConfig`'s settings.

    Defaults differ in ``dual_lr`` (``1e-3``) and ``augmentation`` (``0.5``): the slower
    time scale of the module docstring's *step sizes*.

    Attributes:
        rho: :math:`\rho`, price of the slack :math:`\tfrac{\rho}{2}\lVert u\rVert^2`.
        slack_lr: :math:`\eta_u`, step size of the slack (per mini-batch).
    """

    rho: float = 1.0
    slack_lr: float = 1e-2

    def duals(self) -> DualSettings:
        """The dual update rule: the equality rule's, for the resilient constraint."""
        return dataclasses.replace(
            super().duals(), constraint="resilient", rho=self.rho, slack_lr=self.slack_lr
        )


class _Together:
    """Optimisers or learning-rate schedules stepped together; their state is a list."""

    def __init__(self, *members: Any) -> None:
        self.members = members

    def step(self) -> None:
        for m in self.members:
            m.step()

    def state_dict(self) -> list[dict[str, Any]]:
        return [m.state_dict() for m in self.members]

    def load_state_dict(self, state: list[dict[str, Any]]) -> None:
        for m, s in zip(self.members, state, strict=True):
            m.load_state_dict(s)


class _SplitOptimizer(_Together):
    """The weights' and the γ's optimisers, stepped together."""

    def __init__(self, weights: torch.optim.Optimizer, gammas: torch.optim.Optimizer) -> None:
        super().__init__(weights, gammas)
        self.weights = weights

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [g for o in self.members for g in o.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.members:
            o.zero_grad(set_to_none=set_to_none)


def _split_schedule(optimizer: _SplitOptimizer, epochs: int, lr_min: float) -> _Together:
    """The cosine schedule of the weights' optimiser (the γ's learning rate is constant)."""
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer.weights, epochs, lr_min)
    return _Together(cosine)


def _layer_names(model: nn.Module) -> list[str]:
    """Qualified names of the homotopic layers, in the order of ``homotopy_parameters``."""
    suffix = "." + HOMOTOPY_PARAMETER_NAME
    names = []
    for name in homotopy_parameters(model):
        names.append("" if name == HOMOTOPY_PARAMETER_NAME else name.removesuffix(suffix))
    return names


class _ACESelector(Selector, spaces={"translation", "d4"}):
    """The primal-dual training loop shared by both ACE selectors."""

    project: ClassVar[bool]
    config: _ACEConfig

    def search(self, selection: SelectionRun) -> SelectionResult:
        """Train the homotopic network under the constraint and read out each layer."""
        train, valid, space = selection.train, selection.valid, selection.space
        config = self.config
        target = selection.device
        meter = selection.meter
        epochs = config.epochs
        if meter.limit is not None:
            meter.require(len(train), "one epoch of the homotopic network")
            epochs = meter.limit // len(train)
        folder = selection.claim()
        torch.manual_seed(config.seed)
        model = self._network(space, DataShape.of(train)).to(target)
        gammas = list(homotopy_parameters(model).values())
        layers = _layer_names(model)
        duals = ConstraintDuals(len(gammas), config.duals())
        prior = GaussianPrior(model, init_precision=config.prior_precision)
        optimizer = self._optimizer(model, gammas)
        schedule = _split_schedule(optimizer, epochs, config.lr_min)
        history: list[dict[str, Any]] = []
        start = 0
        meter.count_candidate()
        path = None if folder is None else folder / CHECKPOINT
        if path is not None and path.is_file():
            state = load_checkpoint(path)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            duals.load_state_dict(state["duals"])
            meter.load_state_dict(state["meter"])
            history, start = list(state["history"]), int(state["epoch"])

        def vector() -> torch.Tensor:
            return torch.stack(tuple(gammas))

        n = len(train)
        bar = tqdm(
            range(start, epochs), initial=start, total=epochs, desc=f"{self.name} ({space.name})",
            disable=not selection.progress,
        )  # fmt: skip
        for epoch in bar:
            stats = train_epochs(
                model,
                train,
                epochs=1.0,
                optimizer=optimizer,
                batch_size=config.batch_size,
                seed=indexed_seed(config.seed, epoch),
                meter=meter,
                penalty=lambda: prior.penalty(model) / n + duals.penalty(vector()),
                step_hook=lambda _: duals.step(vector().detach()),
            )
            lr = float(optimizer.param_groups[0]["lr"])
            if stats.steps:  # a wall-clock budget may stop before the first step
                schedule.step()
            record = self._record(epoch, lr, stats, model, valid, meter, duals, layers, vector())
            history.append(record)
            if path is not None:
                save_checkpoint(
                    path,
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "schedule": schedule.state_dict(),
                        "duals": duals.state_dict(),
                        "meter": meter.state_dict(),
                        "history": history,
                        "epoch": epoch + 1,
                    },
                )
            bar.set_postfix(
                loss=f"{record['train_objective']:.3g}",
                max_abs_gamma=f"{max(map(abs, record['gamma'].values())):.2g}",
                acc=f"{record['valid_accuracy']:.3g}",
            )
            if stats.stopped_by_budget:
                break
        return self._result(selection, model, duals, layers, vector(), history)

    def _optimizer(self, model: nn.Module, gammas: list[nn.Parameter]) -> Any:
        """Adam over the weights (``lr``), SGD or Adam over the γ's (``gamma_lr``)."""
        config = self.config
        ids = {id(g) for g in gammas}
        weights = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        make = torch.optim.SGD if config.gamma_optimizer == "sgd" else torch.optim.Adam
        return _SplitOptimizer(
            torch.optim.Adam(weights, lr=config.lr), make(gammas, lr=config.gamma_lr)
        )

    def _network(self, space: SearchSpace, shape: DataShape) -> nn.Module:
        model = space.homotopic_network(shape)
        gammas = homotopy_parameters(model)
        if not gammas:
            raise ValueError(
                f"the homotopic network of the {space.name!r} space has no HomotopicLayer"
            )
        if self.config.init == "equivariant":
            equivariant_unit_moment(model, shape)
        with torch.no_grad():
            for gamma in gammas.values():
                gamma.fill_(self.config.gamma_init)
        return model

    def _record(
        self,
        epoch: int,
        lr: float,
        stats: Any,
        model: nn.Module,
        valid: ImageDataset,
        meter: BudgetMeter,
        duals: ConstraintDuals,
        layers: list[str],
        gamma: torch.Tensor,
    ) -> dict[str, Any]:
        """One epoch's record: γ, λ, u per layer, both validation evaluations."""
        full = evaluate_model(model, valid, meter)
        with equivariant_projection(model):
            projected = evaluate_model(model, valid, meter)
        model.train()
        values = gamma.detach().double().cpu().tolist()
        return {
            "epoch": epoch + 1,
            "train_objective": stats.mean_loss,
            "train_accuracy": stats.accuracy,
            "lagrangian": duals.lagrangian(stats.mean_loss, gamma.detach()),
            "lr": lr,
            "gamma": dict(zip(layers, values, strict=True)),
            "lambda": dict(zip(layers, duals.multipliers.tolist(), strict=True)),
            "u": dict(zip(layers, duals.slacks.tolist(), strict=True)),
            "valid_accuracy": full["accuracy"],
            "valid_nll": full["nll"],
            "projected_valid_accuracy": projected["accuracy"],
            "projected_valid_nll": projected["nll"],
            "image_passes": meter.image_passes,
            "stopped_by_budget": stats.stopped_by_budget,
            "seconds": meter.wall_seconds,
        }

    def _result(
        self,
        selection: SelectionRun,
        model: nn.Module,
        duals: ConstraintDuals,
        layers: list[str],
        gamma: torch.Tensor,
        history: list[dict[str, Any]],
    ) -> SelectionResult:
        space, meter, folder = selection.space, selection.meter, selection.folder
        trained = gamma.detach().double().cpu().tolist()
        if self.project:
            with torch.no_grad():
                for parameter in homotopy_parameters(model).values():
                    parameter.zero_()
        model.train()
        modules = dict(model.named_modules())
        scores = {
            name: {
                "gamma": trained[i],
                "abs_gamma": abs(trained[i]),
                "lambda": float(duals.multipliers[i]),
                "u": float(duals.slacks[i]),
            }
            for i, name in enumerate(layers)
        }
        choices = []
        for choice in space.describe(model):
            layer = _homotopic_owner(choice.layer, modules, scores)
            if layer is None:
                choices.append(choice)
                continue
            module = modules[layer]
            assert isinstance(module, HomotopicLayer)
            returned = abs(float(module.homotopy_gamma.detach()))
            word = "eq" if returned < self.config.gamma_tolerance else "eq+neq"
            symmetry = (
                module.equivariant_symmetry if word == "eq" else module.strict_symmetry()
            ).describe()
            choices.append(LayerChoice(choice.layer, word, symmetry, scores[layer]))
        epochs_done = meter.image_passes / meter.train_size
        result = self.result(
            space,
            model,
            choices=tuple(choices),
            valid=evaluate_model(model, selection.valid, meter),
            cost=meter.cost(final_model_epochs=epochs_done),
            history=tuple(history),
        )
        if folder is not None:
            plot_ace_history(history, folder / FIGURE, title=f"{self.name} ({space.name})")
        return result


def _eq_output(layer: HomotopicLayer, inputs: torch.Tensor) -> torch.Tensor:
    """The output of ``layer``'s equivariant path ``f_eq`` on ``inputs``."""
    return layer.path_outputs(inputs)["eq"]


@torch.no_grad()
def equivariant_unit_moment(model: nn.Module, shape: DataShape, probe_size: int = 8) -> None:
    r"""Rescale every :math:`f_{eq}` so that the :math:`\gamma := 0` network has unit moments.

    A space's initialisation (LSUV) gives each of a relaxed layer's two paths half of the unit
    output moment, with both paths on; at :math:`\gamma = 0` every layer then halves the
    second moment of its input, and the equivariant network ACE-eq returns starts :math:`2^L`
    times too small after :math:`L` layers (a network without normalisation trains slowly
    from there). Here, layer by layer on a fixed Gaussian probe ``[probe_size, C, H, W]``
    with every :math:`\gamma := 0`, each :math:`f_{eq}` is rescaled to unit output moment
    (:func:`~bayesym.backbones.initialisation.scale_to_unit_moment`): the projection starts
    as the strict network would. :math:`f_{neq}` keeps its scale.
    """
    generator = torch.Generator().manual_seed(0)
    reference = next(model.parameters())
    x = torch.randn(probe_size, shape.channels, shape.height, shape.width, generator=generator)
    x = x.to(reference)
    layers = [m for m in model.modules() if isinstance(m, HomotopicLayer)]
    was_training = model.training
    model.eval()
    try:
        with equivariant_projection(model):
            for layer in layers:
                inputs = _layer_input(model, layer, x)
                scale_to_unit_moment(layer.paths["eq"], partial(_eq_output, layer, inputs))
    finally:
        model.train(was_training)


def _layer_input(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What ``layer`` receives when ``model`` runs on ``x``."""
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_pre_hook(lambda _, inputs: captured.append(inputs[0]))
    try:
        model(x)
    finally:
        handle.remove()
    return captured[0]


def _homotopic_owner(
    name: str, modules: dict[str, nn.Module], scores: dict[str, Any]
) -> str | None:
    """The homotopic layer ``name`` is, or contains (``None``: neither)."""
    if name in scores:
        return name
    inside = [s for s in scores if s.startswith(name + ".")]
    return inside[0] if len(inside) == 1 else None


class ACEEqualitySelector(_ACESelector, name="ace-eq", config=ACEEqualityConfig):
    """ACE with the equality constraint γ = 0; returns the equivariant projection."""

    project: ClassVar[bool] = True


class ACEResilientSelector(_ACESelector, name="ace-resilient", config=ACEResilientConfig):
    """ACE with the resilient constraint |γ| <= u; returns the trained network."""

    project: ClassVar[bool] = False
