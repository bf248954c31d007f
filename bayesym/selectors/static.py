r"""The static selector: train fixed baselines of a space and keep the best on validation.

Each baseline (``StaticConfig.baselines``, default every baseline of the space) is one
candidate: its network is built by
:meth:`~bayesym.selectors.spaces.SearchSpace.build_baseline`, initialised with a seed derived
from the selector's seed and the baseline's *name* (so a baseline trains identically whichever
other baselines run beside it), and MAP-trained with the same trainer, optimiser and schedule
as the marglik and RPP selectors under a fixed unit prior (``prior_precision``; a weight decay
:math:`\delta/(2N)`), as ``bayesym fit --map`` does. Candidates run through the
:class:`~bayesym.selectors.executor.CandidateExecutor`. The selected network is the one with the
highest validation accuracy (ties: lower validation NLL, then the order of the baselines,
:func:`best_on_validation`); the history holds every baseline's validation metrics and the
choices' scores are the baselines' validation accuracies.

**Budget.** ``Budget(epochs=B)`` is the selector's total: each of :math:`k` baselines trains
:math:`\lfloor BN/(kN)\rfloor` whole epochs (at least one, or the budget is refused). In
``bayesym compare`` every baseline is a cell of its own with the full budget (a row
``static:<name>``), and the ``static`` row is assembled from those cells with
:func:`best_on_validation`: exactly what this selector returns on all of them with
:math:`k` times the budget, without training them twice.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bayesym.data.image_dataset import ImageDataset
from bayesym.marglik import MarglikConfig, MarglikTrainer
from bayesym.marglik.checkpoint import load_checkpoint
from bayesym.marglik.evaluation import evaluate
from bayesym.priors import GaussianPrior
from bayesym.seeds import SEED_STRIDE, indexed_seed
from bayesym.selectors.base import LayerChoice, SelectionResult, SelectionRun, Selector
from bayesym.selectors.budget import BudgetExhausted
from bayesym.selectors.config_checks import check_positive, check_training
from bayesym.selectors.spaces.base import DataShape, SearchSpace

__all__ = ["StaticConfig", "StaticSelector", "baseline_seed", "best_on_validation"]


@dataclass(frozen=True)
class StaticConfig:
    """Configuration of :class:`StaticSelector`.

    Attributes:
        baselines: names of the baselines to train (``()``: every baseline of the space).
        prior_precision: precision of the fixed Gaussian prior on every parameter group.
        training: MAP schedule and optimiser (``learn_prior`` must be False; its ``seed``
            is replaced per baseline; its ``epochs`` apply when the budget sets none).
        seed: the selector's seed (each baseline's is :func:`baseline_seed`).
    """

    baselines: tuple[str, ...] = ()
    prior_precision: float = 1.0
    training: MarglikConfig = field(default_factory=lambda: MarglikConfig(learn_prior=False))
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.baselines, str) or len(set(self.baselines)) != len(self.baselines):
            raise ValueError(
                f"StaticConfig.baselines must be a tuple of distinct names, got {self.baselines!r}"
            )
        check_positive(self, "prior_precision")
        check_training(self, learn_prior=False, why="static baselines are trained by MAP")


def baseline_seed(seed: int, name: str) -> int:
    """The seed of baseline ``name`` under the selector seed ``seed`` (stable across runs)."""
    return indexed_seed(seed, zlib.crc32(name.encode()) % SEED_STRIDE)


def best_on_validation(metrics: Sequence[Mapping[str, float]]) -> int:
    """Index of the best entry: highest ``accuracy``, then lowest ``nll``, then the first.

    Raises:
        ValueError: for no entries.
    """
    if not metrics:
        raise ValueError("best_on_validation: no candidates")
    return min(range(len(metrics)), key=lambda i: (-metrics[i]["accuracy"], metrics[i]["nll"], i))


@dataclass(frozen=True)
class _Shared:
    """What every baseline's training needs (sent once to the executor)."""

    space: SearchSpace
    shape: DataShape
    train: ImageDataset
    valid: ImageDataset
    device: torch.device
    run_dir: Path | None
    progress: bool
    prior_precision: float


@dataclass(frozen=True)
class _Candidate:
    name: str
    training: MarglikConfig


def _train_baseline(shared: _Shared, candidate: _Candidate) -> dict[str, Any]:
    """Train one baseline (resuming its checkpoint) and score it on validation."""
    torch.manual_seed(candidate.training.seed)
    model = shared.space.build_baseline(candidate.name, shared.shape).to(shared.device)
    prior = GaussianPrior(model, init_precision=shared.prior_precision)
    folder = None if shared.run_dir is None else shared.run_dir / "baselines" / candidate.name
    resumed = 0
    if folder is not None and (folder / "checkpoint.pt").is_file():
        resumed = int(load_checkpoint(folder / "checkpoint.pt")["epoch"])
    trainer = MarglikTrainer(
        model,
        prior=prior,
        config=candidate.training,
        run_dir=folder,
        progress=shared.progress,
        progress_label=f"static:{candidate.name}",
    )
    history = trainer.fit(shared.train)
    valid = evaluate(model, shared.valid, batch_size=500)
    return {
        "baseline": candidate.name,
        "valid": valid,
        "train_loss": history[-1].train_loss,
        "epochs": trainer.epoch,
        "seconds": sum(r.seconds for r in history),
        "seconds_before": sum(r.seconds for r in history[:resumed]),
        "state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


class StaticSelector(
    Selector, name="static", spaces={"translation", "d4", "pixel"}, config=StaticConfig
):
    """Train fixed baselines and keep the best on validation (module docstring)."""

    config: StaticConfig

    def baselines(self, space: SearchSpace) -> tuple[str, ...]:
        """The baselines this selector trains in ``space`` (checked against the space)."""
        names = self.config.baselines or space.baselines()
        for name in names:
            space.check_baseline(name)
        return names

    def search(self, selection: SelectionRun) -> SelectionResult:
        """Train every baseline through ``executor`` and return the best on validation."""
        train, valid, space = selection.train, selection.valid, selection.space
        names = self.baselines(space)
        target = selection.device
        meter = selection.meter
        epochs = self.config.training.epochs
        if meter.limit is not None:
            per_baseline = len(names) * len(train)
            meter.require(per_baseline, f"{len(names)} baseline(s) of one epoch each")
            epochs = meter.limit // per_baseline
        folder = selection.claim()
        candidates = []
        for name in names:
            try:
                meter.charge(epochs * len(train))
            except BudgetExhausted:  # wall-clock limit: train no further baselines
                break
            meter.count_candidate()
            seed = baseline_seed(self.config.seed, name)
            config = dataclasses.replace(self.config.training, epochs=epochs, seed=seed)
            candidates.append(_Candidate(name, config))
        shared = _Shared(
            space, DataShape.of(train), train, valid, target, folder, selection.progress,
            self.config.prior_precision,
        )  # fmt: skip
        trained = selection.executor.map(_train_baseline, candidates, shared=shared)
        meter.count_eval(len(trained) * len(valid))
        earlier = sum(t["seconds_before"] for t in trained)  # epochs of interrupted sessions
        meter.load_state_dict({**meter.state_dict(), "wall_seconds": meter.wall_seconds + earlier})
        best = best_on_validation([t["valid"] for t in trained])
        model = space.build_baseline(trained[best]["baseline"], shared.shape)
        model.load_state_dict(trained[best]["state"])
        model = model.to(target)
        return self.result(
            space,
            model,
            choices=_scored(space.describe(model), trained),
            valid=dict(trained[best]["valid"]),
            cost=meter.cost(final_model_epochs=float(trained[best]["epochs"])),
            history=tuple(
                {k: v for k, v in t.items() if k not in ("state", "seconds_before")}
                for t in trained
            ),
        )


def _scored(
    choices: tuple[LayerChoice, ...], trained: Sequence[Mapping[str, Any]]
) -> tuple[LayerChoice, ...]:
    """The chosen baseline's layers, each scored by every baseline's validation accuracy."""
    scores = {t["baseline"]: float(t["valid"]["accuracy"]) for t in trained}
    return tuple(dataclasses.replace(c, scores=scores) for c in choices)
