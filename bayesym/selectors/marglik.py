r"""The marglik selector: learn one prior precision per (layer, path) by the Laplace marglik.

The space's relaxed network (:meth:`~bayesym.selectors.spaces.SearchSpace.relaxed_network`)
has a :class:`~bayesym.layers.PathSum` per selectable layer with one path per candidate
symmetry: F-FC and CONV in the translation space, one group-convolution path per subgroup
(C1 ... D4) of a norm-free network in the D4 space. Each path gets its own Gaussian prior
:math:`\mathcal N(0,\delta_g^{-1}I)`; :class:`~bayesym.marglik.MarglikTrainer` alternates MAP
epochs with hyper steps that maximise the Laplace marginal likelihood over the precisions
(layer-wise paper, Sec. 4), so a path the data do not need is switched off
(:math:`\delta_g\to\infty`). Mixing logits and homotopy coefficients carry no prior.

**Read-out.** Per relaxed layer, the chosen path is the one with the largest *relative*
effective number of parameters :math:`(\gamma_p/P_p)/\sum_q(\gamma_q/P_q)`,
:math:`\gamma = \sum\lambda/(\lambda+\delta)` (App. D.2; :mod:`bayesym.report`), taken at the
last hyper step; the scores are these relative numbers for every path, and the result's
``effective_parameters`` holds :math:`\gamma_g` for every prior group. The path names come
from the network's :class:`~bayesym.layers.PathSum` keys, so a network with one path per
subgroup names the subgroup of every path. One training run gives choice and weights.

**Cost.** MAP epochs cost :math:`N` passes each; a hyper step's curvature over :math:`M`
images (``training.marglik_subset``, default all) costs :math:`Md` passes with :math:`d` the
back-propagated directions per image (1 for the default MC-1 GGN; counting rule in
:mod:`bayesym.selectors.prior_training`). With ``Budget(epochs=B)`` the schedule is the longest
scaled copy of ``training``'s (burn-in and hyper interval in proportion) whose MAP and
curvature passes together fit into :math:`\lceil BN\rceil`; with ``epochs=None`` it is
``training`` as configured.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from bayesym.marglik import MarglikConfig, hyper_records
from bayesym.priors import GaussianPrior
from bayesym.report import report_from_history
from bayesym.selectors.base import SelectionResult, SelectionRun, Selector
from bayesym.selectors.budget import BudgetMeter
from bayesym.selectors.config_checks import check_positive, check_training
from bayesym.selectors.prior_training import (
    curvature_passes_per_image,
    fit_schedule,
    path_choices,
    train_metered,
)
from bayesym.selectors.spaces.base import DataShape
from bayesym.selectors.training import evaluate_model

__all__ = ["MarglikSelector", "MarglikSelectorConfig"]


@dataclass(frozen=True)
class MarglikSelectorConfig:
    r"""Configuration of :class:`MarglikSelector`.

    Attributes:
        training: the trainer's schedule and optimisers (its ``seed`` is replaced by
            :attr:`seed`; its ``epochs`` apply when the budget sets none).
        init_precision: initial precision :math:`\delta_g` of every prior group.
        seed: seed of initialisation, batch order and Monte-Carlo curvature.
    """

    training: MarglikConfig = field(default_factory=MarglikConfig)
    init_precision: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_training(
            self,
            learn_prior=True,
            why="the marglik selector learns the precisions; use the 'static' or 'rpp' selector "
            "for fixed priors",
        )
        check_positive(self, "init_precision")


class MarglikSelector(
    Selector, name="marglik", spaces={"translation", "d4"}, config=MarglikSelectorConfig
):
    """Select each layer's symmetry by the Laplace marginal likelihood (module docstring)."""

    config: MarglikSelectorConfig

    def schedule(self, meter: BudgetMeter, num_outputs: int) -> MarglikConfig:
        """The trainer configuration that fits ``meter``'s budget (module docstring).

        Raises:
            BudgetTooSmall: if not even one epoch and its hyper step fit.
        """
        config = dataclasses.replace(self.config.training, seed=self.config.seed)
        per_image = curvature_passes_per_image(config.kfac, num_outputs)
        curvature = min(config.marglik_subset or meter.train_size, meter.train_size) * per_image
        return fit_schedule(config, meter, curvature, what="one marglik epoch with a hyper step")

    def search(self, selection: SelectionRun) -> SelectionResult:
        """Train the relaxed network with the marglik and read the choice per layer off it."""
        train, valid, space = selection.train, selection.valid, selection.space
        target = selection.device
        meter = selection.meter
        shape = DataShape.of(train)
        config = self.schedule(meter, shape.num_classes)
        folder = selection.claim()
        torch.manual_seed(self.config.seed)
        model = space.relaxed_network(shape).to(target)
        prior = GaussianPrior(model, init_precision=self.config.init_precision)
        meter.count_candidate()
        run = train_metered(
            model,
            prior,
            config,
            train,
            valid,
            meter=meter,
            passes_per_curvature_image=curvature_passes_per_image(config.kfac, shape.num_classes),
            run_dir=folder,
            progress=selection.progress,
            label=f"{self.name} ({space.name})",
        )
        history = run.history
        if hyper_records(history):
            report = report_from_history(history, prior.groups)
            choices = path_choices(model, report)
            effective = dict(hyper_records(history)[-1].effective_parameters or {})
        else:  # stopped by a wall-clock limit before the first hyper step
            choices, effective = space.describe(model), None
        return self.result(
            space,
            model,
            choices=choices,
            valid=evaluate_model(model, valid, meter),
            cost=meter.cost(final_model_epochs=float(run.trainer.epoch)),
            history=tuple(
                {**r.to_json(), "stopped_by_budget": run.stopped_by_budget} for r in history
            ),
            effective_parameters=effective,
        )
