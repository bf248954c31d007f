r"""Metered training under a Gaussian prior: the runs of the static, marglik and RPP selectors.

The three selectors train with :class:`~bayesym.marglik.MarglikTrainer` (MAP steps with the
prior term :math:`\tfrac{1}{2N}\sum_g\delta_g\lVert\theta_g\rVert^2`; hyper steps on the
precisions for the marglik, none for MAP), so they share one optimiser, schedule and batch
order, and differ only in the network and the prior. This module fits the trainer's schedule
into a :class:`~bayesym.selectors.budget.Budget`, charges the meter before every MAP batch and
every curvature pass, resumes the meter with the trainer's checkpoint, and reads per-layer
choices out of an effective-parameter report.

**Counting rule for curvature passes.** A KFAC over :math:`M` training images back-propagates
:math:`d` output directions per image after one forward pass: :math:`d = k` for the
:math:`k`-sample Monte-Carlo GGN (``ggn_type="mc"``, the default MC-1: one backward per
image), :math:`d = C` for the exact GGN of :math:`C` outputs, :math:`d = 1` for the empirical
Fisher. Each direction is charged as one training image pass, so a hyper step costs
:math:`M d` passes (:func:`curvature_passes_per_image`). Its eigendecompositions and the
Adam steps on the precisions touch no image and are not charged; they show in wall seconds.

**Schedules within a budget** (:func:`fit_schedule`). A schedule of :math:`E` MAP epochs on
:math:`N` images with :math:`H(E)` hyper steps of :math:`M` images costs
:math:`EN + H(E)Md` passes (plus a fixed ``extra``, e.g. a final read-out pass). The burn-in
and the number of hyper steps scale with :math:`E` (:func:`scaled_schedule`: the configured
schedule's proportions, at least one hyper step, the last after the last epoch), and
:math:`E` is the largest number of whole epochs whose cost fits into :math:`\lceil BN\rceil`
passes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from bayesym.layers.paths import PathSum
from bayesym.marglik import EpochRecord, MarglikConfig, MarglikTrainer
from bayesym.marglik.checkpoint import load_checkpoint
from bayesym.priors import GaussianPrior
from bayesym.report import EffectiveParameterReport
from bayesym.selectors.base import LayerChoice, SelectionResult, SelectionRun, Selector
from bayesym.selectors.budget import BudgetExhausted, BudgetMeter, BudgetTooSmall
from bayesym.selectors.training import evaluate_model
from curvature import KFACConfig

__all__ = [
    "TrainedRun",
    "curvature_passes_per_image",
    "fit_schedule",
    "hyper_step_count",
    "path_choices",
    "scaled_schedule",
    "schedule_passes",
    "train_metered",
    "trained_result",
]


def curvature_passes_per_image(kfac: KFACConfig, num_outputs: int) -> int:
    """Training image passes charged per image of a curvature pass (module docstring)."""
    if kfac.ggn_type == "mc":
        return kfac.mc_samples
    if kfac.ggn_type == "exact":
        return num_outputs
    return 1


def hyper_step_count(config: MarglikConfig, epochs: int | None = None) -> int:
    """Hyper steps in the first ``epochs`` epochs (default: all) of ``config``'s schedule."""
    epochs = config.epochs if epochs is None else epochs
    return sum(config.is_hyper_epoch(e) for e in range(epochs))


def scaled_schedule(config: MarglikConfig, epochs: int) -> MarglikConfig:
    r"""``config``'s schedule scaled to ``epochs`` epochs, in proportion.

    A schedule of :math:`E_0` epochs with :math:`K_0` hyper steps and burn-in :math:`b_0`
    becomes one of :math:`E` epochs with :math:`K = \max(1, \mathrm{round}(K_0E/E_0))` hyper
    steps, the last one after the last epoch (so the read-out sees the final weights), spaced
    :math:`h = \max(1, \lfloor (E - \mathrm{round}(b_0E/E_0))/(K-1)\rfloor)` epochs apart
    (burn-in :math:`E - (K-1)h`). The fraction of the passes spent on curvature stays that of
    ``config``. ``scaled_schedule(config, config.epochs)`` is ``config``; a schedule without
    hyper steps (MAP) only changes its number of epochs.
    """
    hyper = hyper_step_count(config)
    if epochs == config.epochs or hyper == 0:
        return dataclasses.replace(config, epochs=epochs)
    steps = max(1, round(hyper * epochs / config.epochs))
    if steps == 1:
        return dataclasses.replace(config, epochs=epochs, burn_in=epochs, hyper_every=1)
    burn_in = min(epochs, round(config.burn_in * epochs / config.epochs))
    every = max(1, (epochs - burn_in) // (steps - 1))
    return dataclasses.replace(
        config, epochs=epochs, burn_in=max(0, epochs - (steps - 1) * every), hyper_every=every
    )


def schedule_passes(config: MarglikConfig, train_size: int, curvature_cost: int) -> int:
    """Training image passes of ``config``'s whole schedule (``curvature_cost`` per hyper step)."""
    return config.epochs * train_size + hyper_step_count(config) * curvature_cost


def fit_schedule(
    config: MarglikConfig,
    meter: BudgetMeter,
    curvature_cost: int,
    *,
    extra: int = 0,
    what: str,
) -> MarglikConfig:
    """The longest scaled schedule of ``config`` whose passes (+ ``extra``) fit the budget.

    Without a pass limit, ``config`` itself.

    Args:
        config: the schedule to scale.
        meter: the selector's meter (its limit and training-set size).
        curvature_cost: passes of one hyper step (:math:`Md`).
        extra: passes spent outside the schedule (e.g. a final curvature read-out).
        what: what one epoch is, for the error message.

    Raises:
        BudgetTooSmall: if not even one epoch (with its hyper step) fits.
    """
    if meter.limit is None:
        return config
    n = meter.train_size
    for epochs in range(max(1, meter.limit // n), 0, -1):
        candidate = scaled_schedule(config, epochs)
        if schedule_passes(candidate, n, curvature_cost) + extra <= meter.limit:
            return candidate
    meter.require(schedule_passes(scaled_schedule(config, 1), n, curvature_cost) + extra, what)
    raise BudgetTooSmall(f"{what} does not fit into the budget")  # pragma: no cover


@dataclass
class TrainedRun:
    """What :func:`train_metered` did.

    Attributes:
        trainer: the trainer (its model, prior, ``last_kfac``).
        history: every epoch's record (resumed epochs included).
        stopped_by_budget: whether the meter stopped training before the schedule's end.
    """

    trainer: MarglikTrainer
    history: list[EpochRecord]
    stopped_by_budget: bool


def _resume_meter(
    meter: BudgetMeter,
    checkpoint: Path,
    config: MarglikConfig,
    curvature_cost: int,
    valid_size: int,
) -> int:
    """Set the meter to what the epochs saved in ``checkpoint`` spent; return their number.

    The image and evaluation passes are exact; the wall seconds are the saved epochs' own.
    """
    state = load_checkpoint(checkpoint)
    done = int(state["epoch"])
    seconds = sum(float(r["seconds"]) for r in state["history"])
    meter.load_state_dict(
        {
            "image_passes": done * meter.train_size
            + hyper_step_count(config, done) * curvature_cost,
            "eval_passes": done * valid_size,
            "candidates_trained": meter.candidates_trained,
            "wall_seconds": seconds,
        }
    )
    return done


def train_metered(
    selection: SelectionRun,
    model: nn.Module,
    prior: GaussianPrior,
    config: MarglikConfig,
    *,
    passes_per_curvature_image: int,
    label: str,
) -> TrainedRun:
    """Train ``model`` under ``prior`` with ``config`` as the one candidate of ``selection``.

    Every pass is charged to the selection's meter before it is made. With a claimed run
    directory the trainer checkpoints every epoch into its ``trainer`` folder and a restart
    resumes it (the meter included). A refused charge (wall-clock limit) stops training where
    it is.

    Args:
        selection: the selection run (training and validation splits, meter, progress, the
            claimed :attr:`~bayesym.selectors.base.SelectionRun.folder`).
        model: the network, on the selection's device.
        prior: its prior.
        config: the trainer's schedule (fitted to the budget, :func:`fit_schedule`).
        passes_per_curvature_image: :func:`curvature_passes_per_image` of the hyper steps.
        label: the progress label; the space's name is added in parentheses.
    """
    train, valid, meter = selection.train, selection.valid, selection.meter
    meter.count_candidate()
    trainer_dir = None if selection.folder is None else selection.folder / "trainer"
    curvature_cost = (config.marglik_subset or len(train)) * passes_per_curvature_image
    curvature_cost = min(curvature_cost, len(train) * passes_per_curvature_image)
    done = 0
    if trainer_dir is not None and (trainer_dir / "checkpoint.pt").is_file():
        done = _resume_meter(
            meter, trainer_dir / "checkpoint.pt", config, curvature_cost, len(valid)
        )
    charge: Callable[[str, int], None] = lambda work, images: meter.charge(  # noqa: E731
        images * (passes_per_curvature_image if work == "curvature" else 1)
    )
    trainer = MarglikTrainer(
        model,
        prior=prior,
        config=config,
        run_dir=trainer_dir,
        progress=selection.progress,
        progress_label=f"{label} ({selection.space.name})",
        charge=charge,
    )
    stopped = False
    try:
        trainer.fit(train, valid)
    except BudgetExhausted:
        stopped = True
    meter.count_eval((len(trainer.history) - done) * len(valid))
    trainer.model.train()
    return TrainedRun(trainer, list(trainer.history), stopped)


def trained_result(
    selector: Selector,
    selection: SelectionRun,
    run: TrainedRun,
    *,
    choices: Sequence[LayerChoice],
    effective_parameters: Mapping[str, float] | None,
    record: Mapping[str, Any] | None = None,
) -> SelectionResult:
    """``selector``'s result for the model of ``run``, scored on the validation split.

    The cost counts the epochs trained as the final model's; the history is one record per
    epoch: the trainer's, then ``record``'s entries and ``stopped_by_budget``.
    """
    model = run.trainer.model
    return selector.result(
        selection.space,
        model,
        choices=choices,
        valid=evaluate_model(model, selection.valid, selection.meter),
        cost=selection.meter.cost(final_model_epochs=float(run.trainer.epoch)),
        history=tuple(
            {**r.to_json(), **(record or {}), "stopped_by_budget": run.stopped_by_budget}
            for r in run.history
        ),
        effective_parameters=effective_parameters,
    )


def path_choices(model: nn.Module, report: EffectiveParameterReport) -> tuple[LayerChoice, ...]:
    r"""One :class:`LayerChoice` per relaxed layer (:class:`PathSum`) of ``model``.

    The choice is the path with the largest relative effective number of parameters
    :math:`(\gamma_p/P_p)/\sum_q(\gamma_q/P_q)`; the scores are those relative numbers per
    path; the symmetry is the chosen path's.

    Raises:
        ValueError: if the report has no row for a relaxed layer of ``model``.
    """
    records: dict[str, dict[str, float]] = {}
    for record in report.records():
        records.setdefault(record["layer"], {})[record["path"]] = float(record["relative"])
    choices = []
    for name, module in model.named_modules():
        if not isinstance(module, PathSum):
            continue
        scores = records.get(name)
        if not scores:
            raise ValueError(f"the effective-parameter report has no paths of layer {name!r}")
        best = max(scores, key=lambda path: (scores[path], path))
        symmetry = module.path_symmetries[best].describe()
        choices.append(LayerChoice(name, best, symmetry, scores))
    return tuple(choices)
