r"""EquiNAS_E: evolutionary search over the subgroup of every block by relaxation morphisms.

The evolutionary search of the EquiNAS paper (Sec. 5.1, Alg. 1, App. B) on the ``d4`` space:

1. The population starts as one network with every block over D4, trained for ``fraction``
   (:math:`f`) of an epoch.
2. Every generation, each parent contributes itself (it keeps training) and one child per
   allowed move. A move relaxes one block ``b`` from :math:`G_b` to a subgroup :math:`H` by the
   relaxation morphism (:meth:`~bayesym.backbones.equinas.EquiNASNet.relax_layer`): the child
   computes the same function as its parent and inherits its weights, with :math:`[G_b:H]`
   times the parameters in that block; groups stay non-increasing with depth.
3. Every candidate trains for :math:`f` epochs with a fresh optimiser (SGD without momentum by
   default, so that the morphism never meets stale momentum) and is scored on the validation
   split: validation error and number of parameters.
4. The next population is the Pareto front of (validation error, parameters)
   (:func:`~bayesym.selectors.pareto.pareto_select`: a front smaller than ``population`` is
   topped up with the most accurate remaining candidates; a larger front is kept whole, as in
   the paper, or cut with ``front="cap"``).

**Moves** (``moves``). ``"any"`` (default, the paper's text): every ``(block, H)`` with
:math:`G_{b+1} \le H < G_b` (:meth:`~bayesym.backbones.equinas.EquiNASNet.relaxations`), D2
included. ``"reference"``: the public reference code's narrower set: the last block may lose
its flip or part of its rotations (one coordinate of :math:`(f, r)`, :math:`G = R^{2^r}`-
rotations with or without the flip), any other block may only copy its successor's group, and
every child with a D2 block is dropped. Children of one parent are distinct; two parents may
have children with the same groups (different weights): both are candidates.

**Result.** The individual with the best validation accuracy in the final population (ties:
lower NLL, then population order); each block's choice is its group, scored by the share of
the final population using each group there. The history has one record per generation with
every individual of the population (id, parent, groups, the moves from the all-D4 root,
parameters, validation metrics, epochs along its lineage): the last record is the final
population, and :func:`~bayesym.selectors.equinas_lineage.lineage` follows the best
individual back to the root. With a run directory, ``lineage.png`` shows that line
(:func:`~bayesym.selectors.equinas_lineage.plot_lineage`).

**Budget.** A candidate costs :math:`\lceil fN\rceil` training image passes and is charged
before it is trained; a generation only takes candidates that still fit entirely, so the
budget is never exceeded; the search stops after ``generations`` or at the first generation
that could not train all its candidates. Candidates run through the
:class:`~bayesym.selectors.executor.CandidateExecutor` with seeds derived from the selector's
seed, the generation and the candidate's position, so any executor gives the same result.

**Finish** (``finish_epochs``, a variant, off by default). Under an equal pass budget the
final individual has trained only about ``generations·f`` epochs along its lineage; with
``finish_epochs = E`` the search leaves :math:`\lceil EN\rceil` passes unspent and the best
individual then trains ``E`` more epochs with a fresh optimiser. The result's validation
metrics and weights are then the finished ones, and the last history record says so
(``"finish"``).

**Checkpoints.** With a run directory, the population (weights, records), the meter and the
history are written atomically after every generation (``equinas_e.pt``); a run restarted
with the same directory continues from the last finished generation and reaches the same
result as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from bayesym.backbones.equinas import EquiNASNet
from bayesym.data.image_dataset import ImageDataset
from bayesym.groups.d4 import d4_subgroup, d4_subgroups
from bayesym.groups.finite import is_subgroup
from bayesym.seeds import indexed_seed
from bayesym.selectors.base import (
    LayerChoice,
    SelectionResult,
    SelectionRun,
    Selector,
    parameter_count,
)
from bayesym.selectors.budget import BudgetExhausted, BudgetMeter, BudgetTooSmall
from bayesym.selectors.config_checks import (
    check_fields,
    check_non_negative,
    check_one_of,
    check_positive,
    check_positive_int,
)
from bayesym.selectors.equinas_lineage import plot_lineage
from bayesym.selectors.executor import CandidateExecutor
from bayesym.selectors.pareto import pareto_select
from bayesym.selectors.spaces.base import DataShape
from bayesym.selectors.spaces.d4 import D4SubgroupSpace
from bayesym.selectors.static import best_on_validation
from bayesym.selectors.training import (
    OptimizerSettings,
    evaluate_model,
    make_optimizer,
    train_epochs,
)

__all__ = [
    "CHECKPOINT_FILE",
    "EquiNASESelector",
    "EquiNASEConfig",
    "Move",
    "candidate_seed",
    "child_moves",
    "spawn",
]

CHECKPOINT_FILE = "equinas_e.pt"
"""The per-generation checkpoint in the run directory."""

Move = tuple[int, str]
"""``(block, subgroup name)``: relax ``block`` to the subgroup."""

_FLIP_ROTATION = {
    "C1": (0, 0), "C2": (0, 1), "C4": (0, 2), "D1": (1, 0), "D2": (1, 1), "D4": (1, 2),
}  # fmt: skip
"""Subgroup -> (flip f, rotation exponent r), the reference code's coordinates."""
_BY_FLIP_ROTATION = {v: k for k, v in _FLIP_ROTATION.items()}


@dataclass(frozen=True)
class EquiNASEConfig:
    """Configuration of :class:`EquiNASESelector` (module docstring; paper defaults, App. B).

    Attributes:
        population: population size ``P`` (paper 5).
        generations: number of generations (paper 50).
        fraction: epochs each candidate trains per generation, ``f`` (paper 0.5).
        moves: ``"any"`` or ``"reference"``.
        front: ``"whole"`` (keep a front larger than ``P``) or ``"cap"`` (cut it to ``P``).
        finish_epochs: a variant, not the paper's: after the search the best individual
            trains this many more epochs with a fresh optimiser (0: none, the paper's rule);
            under a pass budget these epochs are reserved before the search starts.
        optimizer: each candidate's fresh optimiser (paper: SGD, lr 0.1, batch 64).
        seed: seed of the root's initialisation and of every candidate's batch order.
    """

    population: int = 5
    generations: int = 50
    fraction: float = 0.5
    moves: Literal["any", "reference"] = "any"
    front: Literal["whole", "cap"] = "whole"
    finish_epochs: float = 0.0
    optimizer: OptimizerSettings = field(
        default_factory=lambda: OptimizerSettings(name="sgd", lr=0.1, batch_size=64)
    )
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive_int(self, "population", "generations")
        check_positive(self, "fraction")
        check_non_negative(self, "finish_epochs")
        check_one_of(self, "moves", ("any", "reference"))
        check_one_of(self, "front", ("whole", "cap"))
        check_fields(
            self,
            ("optimizer",),
            lambda v: isinstance(v, OptimizerSettings),
            "must be OptimizerSettings",
        )


def child_moves(groups: Sequence[str], moves: Literal["any", "reference"]) -> list[Move]:
    """The moves a parent with per-block ``groups`` may make (module docstring), in order.

    Example:
        >>> child_moves(["D4", "D4", "C4"], "any")
        [(1, 'C4'), (2, 'C1'), (2, 'C2')]
        >>> child_moves(["D4", "D4", "D4"], "reference")
        [(2, 'C4'), (2, 'D1')]
    """
    if moves == "any":
        net_groups = list(groups)
        result = []
        for block, group in enumerate(net_groups):
            lower = net_groups[block + 1] if block + 1 < len(net_groups) else "C1"
            for sub in _between(lower, group):
                result.append((block, sub))
        return result
    last = len(groups) - 1
    flip, rotation = _FLIP_ROTATION[groups[last]]
    candidates: list[Move] = []
    if flip:
        candidates.append((last, _BY_FLIP_ROTATION[(0, rotation)]))
    for step in range(1, rotation + 1):
        candidates.append((last, _BY_FLIP_ROTATION[(flip, rotation - step)]))
    for block in range(1, len(groups)):
        if groups[block] != groups[block - 1]:
            candidates.append((block - 1, groups[block]))
    result, seen = [], set()
    for block, sub in candidates:
        child = tuple(sub if b == block else g for b, g in enumerate(groups))
        if "D2" not in child and child not in seen:
            seen.add(child)
            result.append((block, sub))
    return result


def _between(lower: str, upper: str) -> list[str]:
    """Names of the subgroups ``H`` with ``lower <= H < upper``, sorted."""
    low, high = d4_subgroup(lower), d4_subgroup(upper)
    return sorted(
        k.name
        for k in d4_subgroups()
        if k is not high and is_subgroup(low, k) and is_subgroup(k, high)
    )


def spawn(
    space: D4SubgroupSpace,
    shape: DataShape,
    moves: Sequence[Move],
    state: Mapping[str, Tensor] | None,
    move: Move | None = None,
) -> EquiNASNet:
    """The network reached from the all-D4 root by ``moves``, with weights ``state``.

    The structure is rebuilt by replaying ``moves`` on a fresh all-D4 network, then ``state``
    (the individual's weights; ``None``: keep the fresh initialisation) is loaded; ``move``
    then relaxes one more block by the function-preserving morphism (a child).
    """
    net = space.network("D4", shape)
    for block, sub in moves:
        net = net.relax_layer(block, sub)
    if state is not None:
        net.load_state_dict(state)
    if move is not None:
        net = net.relax_layer(*move)
    return net


@dataclass(frozen=True)
class _Shared:
    """What every candidate's training needs (sent once to the executor)."""

    space: D4SubgroupSpace
    shape: DataShape
    train: ImageDataset
    valid: ImageDataset
    device: torch.device
    fraction: float
    optimizer: OptimizerSettings


@dataclass(frozen=True)
class _Candidate:
    moves: tuple[Move, ...]
    state: dict[str, Tensor] | None
    move: Move | None
    seed: int


def _train_candidate(shared: _Shared, candidate: _Candidate) -> dict[str, Any]:
    """Build (or spawn) one candidate, train it for ``f`` epochs, score it on validation."""
    if candidate.state is None:
        torch.manual_seed(candidate.seed)
    net = spawn(shared.space, shared.shape, candidate.moves, candidate.state, candidate.move)
    net = net.to(shared.device)
    optimizer = make_optimizer(net.parameters(), shared.optimizer)
    stats = train_epochs(
        net, shared.train, epochs=shared.fraction, optimizer=optimizer,
        batch_size=shared.optimizer.batch_size, seed=candidate.seed,
    )  # fmt: skip
    valid = evaluate_model(net, shared.valid)
    return {
        "state": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "groups": [g.name for g in net.groups],
        "parameters": parameter_count(net),
        "valid": valid,
        "train_loss": stats.mean_loss,
    }


def candidate_seed(seed: int, generation: int, position: int) -> int:
    """The batch-order (and root initialisation) seed of a candidate."""
    return indexed_seed(seed, generation) * 10_007 + position


class EquiNASESelector(Selector, name="equinas-e", spaces={"d4"}, config=EquiNASEConfig):
    """Evolutionary subgroup search by relaxation morphisms (module docstring)."""

    config: EquiNASEConfig

    def search(self, selection: SelectionRun) -> SelectionResult:
        """Evolve the population (module docstring) and return its best individual."""
        train, valid, space = selection.train, selection.valid, selection.space
        if not isinstance(space, D4SubgroupSpace):
            raise TypeError(f"{self.name} needs a D4SubgroupSpace, got {type(space).__name__}")
        config = self.config
        meter = selection.meter
        passes = math.ceil(config.fraction * len(train))
        reserve = math.ceil(config.finish_epochs * len(train))
        meter.require(
            passes + reserve,
            f"training the all-D4 network for {config.fraction:g} epochs"
            + (f" and the finish of {config.finish_epochs:g} epochs" if reserve else ""),
        )
        shape = DataShape.of(train)
        shared = _Shared(
            space, shape, train, valid, selection.device, config.fraction, config.optimizer
        )
        folder = selection.claim()
        executor = selection.executor
        run = _Search(self, shared, meter, (passes, reserve), executor, selection.progress)
        if not run.resume(folder):
            root = _Candidate((), None, None, candidate_seed(config.seed, 0, 0))
            run.generation([(None, root)], 0)
            if not run.population:
                raise BudgetTooSmall(
                    f"{self.name}: the wall-clock budget ran out before the all-D4 network "
                    "was trained; raise Budget.wall_seconds"
                )
            run.save(folder)
        while run.next_generation <= config.generations and not run.stopped:
            if not meter.can_afford(passes + reserve):
                break
            run.step()
            run.save(folder)
        run.finish()
        result = run.result(space)
        if folder is not None:
            plot_lineage(result.history, folder / "lineage.png")
        return result


class _Search:
    """The mutable state of one EquiNAS_E run (population, weights, history, meter)."""

    def __init__(
        self,
        selector: EquiNASESelector,
        shared: _Shared,
        meter: BudgetMeter,
        passes: tuple[int, int],
        executor: CandidateExecutor,
        progress: bool,
    ) -> None:
        self.selector, self.config = selector, selector.config
        self.shared, self.meter = shared, meter
        self.passes, self.reserve = passes  # per candidate; kept back for the finish
        self.executor, self.progress = executor, progress
        self.population: list[dict[str, Any]] = []
        self.states: dict[int, dict[str, Tensor]] = {}
        self.history: list[dict[str, Any]] = []
        self.next_id = 0
        self.next_generation = 1
        self.stopped = False
        self.finished: dict[str, Any] | None = None

    def step(self) -> None:
        """One generation: every parent and its children, then Pareto selection."""
        g = self.next_generation
        items = []
        for parent in self.population:
            moves = [tuple(m) for m in parent["moves"]]
            state = self.states[parent["id"]]
            items.append((parent, _Candidate(tuple(moves), state, None, 0)))
            for move in child_moves(parent["groups"], self.config.moves):
                items.append((parent, _Candidate(tuple(moves), state, move, 0)))
        items = [
            (parent, dataclasses.replace(c, seed=candidate_seed(self.config.seed, g, i)))
            for i, (parent, c) in enumerate(items)
        ]
        self.generation(items, g)

    def generation(self, items: Sequence[tuple[dict | None, _Candidate]], g: int) -> None:
        """Charge, train and score ``items``, then select the next population."""
        affordable = []
        for item in items:
            if not self.meter.can_afford(self.passes + self.reserve):
                break
            self.meter.charge(self.passes)
            self.meter.count_candidate()
            affordable.append(item)
        self.stopped = len(affordable) < len(items)
        trained = self.executor.map(
            _train_candidate, [c for _, c in affordable], shared=self.shared
        )
        self.meter.count_eval(len(trained) * len(self.shared.valid))
        pool, states = [], {}
        for (parent, candidate), out in zip(affordable, trained, strict=True):
            if parent is not None and candidate.move is None:  # the parent continues
                ident, ancestor, born = parent["id"], parent["parent"], parent["born"]
            else:
                ident, ancestor, born = self.next_id, None if parent is None else parent["id"], g
                self.next_id += 1
            record = {
                "id": ident,
                "parent": ancestor,
                "groups": out["groups"],
                "moves": [list(m) for m in candidate.moves]
                + ([list(candidate.move)] if candidate.move is not None else []),
                "born": born,
                "epochs": (0.0 if parent is None else parent["epochs"]) + self.config.fraction,
                "parameters": out["parameters"],
                "accuracy": float(out["valid"]["accuracy"]),
                "nll": float(out["valid"]["nll"]),
            }
            pool.append(record)
            states[record["id"]] = out["state"]
        retrained = {r["id"] for r in pool}
        for parent in self.population:  # parents the budget could not retrain stay as they were
            if parent["id"] not in retrained:
                pool.append(parent)
                states[parent["id"]] = self.states[parent["id"]]
        costs = [(1.0 - r["accuracy"], float(r["parameters"])) for r in pool]
        keep = pareto_select(costs, self.config.population, cap=self.config.front == "cap")
        self.population = [pool[i] for i in keep]
        self.states = {r["id"]: states[r["id"]] for r in self.population}
        if not self.population:  # a wall-clock limit before the root was trained
            return
        best = self.population[self.best_index()]
        self.history.append(
            {
                "generation": g,
                "candidates": len(trained),
                "best": best["id"],
                "population": [dict(r) for r in self.population],
                "image_passes": self.meter.image_passes,
                "seconds": self.meter.wall_seconds,
                "stopped_by_budget": self.stopped,
            }
        )
        self.next_generation = g + 1
        if self.progress:
            print(
                f"{self.selector.name} generation {g}/{self.config.generations}: "
                f"{len(trained)} candidates, best valid acc {best['accuracy']:.4f} "
                f"{'/'.join(best['groups'])}, "
                f"{self.meter.image_passes / self.meter.train_size:.1f} epochs spent",
                file=sys.stderr,
            )

    def finish(self) -> None:
        """Train the best individual ``finish_epochs`` more (the variant of the config)."""
        if not self.reserve:
            return
        try:
            self.meter.charge(self.reserve)
        except BudgetExhausted:  # a wall-clock limit: return the search's best as it is
            return
        self.meter.count_candidate()
        best = self.population[self.best_index()]
        seed = candidate_seed(self.config.seed, self.config.generations + 1, 0)
        moves = tuple((int(b), str(g)) for b, g in best["moves"])
        candidate = _Candidate(moves, self.states[best["id"]], None, seed)
        shared = dataclasses.replace(self.shared, fraction=self.config.finish_epochs)
        (out,) = self.executor.map(_train_candidate, [candidate], shared=shared)
        self.meter.count_eval(len(self.shared.valid))
        self.finished = {
            "id": best["id"],
            "epochs": best["epochs"] + self.config.finish_epochs,
            "accuracy": float(out["valid"]["accuracy"]),
            "nll": float(out["valid"]["nll"]),
            "state": out["state"],
        }

    def best_index(self) -> int:
        return best_on_validation(
            [{"accuracy": r["accuracy"], "nll": r["nll"]} for r in self.population]
        )

    def save(self, folder: Path | None) -> None:
        if folder is None:
            return
        state = {
            "population": self.population,
            "states": self.states,
            "history": self.history,
            "next_id": self.next_id,
            "next_generation": self.next_generation,
            "stopped": self.stopped,
            "meter": self.meter.state_dict(),
        }
        tmp = folder / (CHECKPOINT_FILE + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, folder / CHECKPOINT_FILE)

    def resume(self, folder: Path | None) -> bool:
        if folder is None or not (folder / CHECKPOINT_FILE).is_file():
            return False
        state = torch.load(folder / CHECKPOINT_FILE, map_location="cpu", weights_only=False)
        self.population, self.states = state["population"], state["states"]
        self.history, self.next_id = state["history"], state["next_id"]
        self.next_generation, self.stopped = state["next_generation"], state["stopped"]
        self.meter.load_state_dict(state["meter"])
        return True

    def result(self, space: D4SubgroupSpace) -> SelectionResult:
        best = dict(self.population[self.best_index()])
        state, history = self.states[best["id"]], list(self.history)
        if self.finished is not None:
            state = self.finished["state"]
            finish = {k: v for k, v in self.finished.items() if k != "state"}
            best.update({k: finish[k] for k in ("epochs", "accuracy", "nll")})
            history[-1] = {**history[-1], "finish": finish}
        moves = [tuple(m) for m in best["moves"]]
        model = spawn(space, self.shared.shape, moves, state)
        model = model.to(self.shared.device)
        return self.selector.result(
            space,
            model,
            choices=self._choices(space.describe(model)),
            valid={"accuracy": best["accuracy"], "nll": best["nll"]},
            cost=self.meter.cost(final_model_epochs=best["epochs"]),
            history=tuple(history),
        )

    def _choices(self, choices: tuple[LayerChoice, ...]) -> tuple[LayerChoice, ...]:
        """Each block scored by the share of the final population using each group there."""
        scored = []
        for b, choice in enumerate(choices):
            counts = Counter(r["groups"][b] for r in self.population)
            shares = {k: n / len(self.population) for k, n in counts.items()}
            scored.append(dataclasses.replace(choice, scores=shares))
        return tuple(scored)
