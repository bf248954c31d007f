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
    trained_result,
)
from bayesym.selectors.spaces.base import DataShape

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
        shape = DataShape.of(selection.train)
        config = self.schedule(selection.meter, shape.num_classes)
        selection.claim()
        torch.manual_seed(self.config.seed)
        model = selection.space.relaxed_network(shape).to(selection.device)
        prior = GaussianPrior(model, init_precision=self.config.init_precision)
        run = train_metered(
            selection,
            model,
            prior,
            config,
            passes_per_curvature_image=curvature_passes_per_image(config.kfac, shape.num_classes),
            label=self.name,
        )
        hyper = hyper_records(run.history)
        if hyper:
            choices = path_choices(model, report_from_history(run.history, prior.groups))
            effective = dict(hyper[-1].effective_parameters or {})
        else:  # stopped by a wall-clock limit before the first hyper step
            choices, effective = selection.space.describe(model), None
        return trained_result(self, selection, run, choices=choices, effective_parameters=effective)
