r"""The AEN selector: deep Q-learning over the 12 pixel transformations, then top-k retraining.

AEN (Basu et al., "Group Equivariant Neural Architecture Search via Group Decomposition and
Reinforcement Learning", Sec. 4-5) on the ``pixel`` space (:mod:`bayesym.selectors.spaces.pixel`):

* **Environment.** A state :math:`s` is a subset of the 12 transformations (a 12-bit integer).
  Its *child* is the invariant MLP of :math:`s`, initialised with a seed drawn from the state
  and the run seed (:func:`child_seed`), trained for ``child_epochs`` epochs of the training
  split (Adam, batch 64) and scored on the **validation** split after every whole epoch and at
  the end; :math:`\mathrm{acc}(s)` is the best of those scores (the paper's "maximum held-out
  accuracy over the child's epochs"). The reward of reaching :math:`s` is the paper's Eq. 18
  with accuracies as fractions,

  .. math:: R(s) = x\,e^{|x|}, \qquad x = \mathrm{acc}(s) - \mathrm{acc}(\varnothing),

  where :math:`\varnothing` is the no-symmetry MLP (the start state). A revisited state reuses
  its score and trains nothing. The environment is pluggable (:class:`Environment`): the
  search only asks it for the accuracy of new states.
* **Agent** (:mod:`bayesym.selectors.dqn`). Episodes of ``episode_length`` toggle actions
  from the empty state (by default the paper's 101 per 1,200 children scaled to the budget);
  :math:`\varepsilon`-greedy with Table 1's schedule scaled to the number of children the
  budget pays for, counted in *new* children; ``q_updates_per_step`` Q-learning steps per
  environment step once the replay memory holds ``min_replay`` transitions; the target
  network copied every ``target_sync`` new children.
* **Selection.** The ``top_k`` states by reward (ties: first visited) are retrained from their
  seeds for ``retrain_epochs`` epochs and scored on validation; the best (accuracy, then NLL)
  is returned. If a wall-clock budget ends the search before the retraining can be paid for,
  the best child's own weights are returned.

**Budget.** ``Budget(epochs=B)`` on :math:`N` training images pays for
:math:`\lfloor (BN - k\,\lceil r N\rceil)/\lceil cN\rceil\rfloor` children of ``c =
child_epochs`` epochs after reserving the retraining of ``k = top_k`` states for ``r =
retrain_epochs`` epochs; ``epochs=None`` runs ``children`` children. Every child and
retraining is charged before it trains.

**Checkpoint.** With a ``run_dir``, the agent (Q and target networks, optimiser), the replay
memory, the visited states and their scores, the agent's RNG, the counters and the best child
are saved atomically after every ``checkpoint_every`` new children; a run killed and restarted
on the same directory resumes from there and reaches the same result.

Reference-code defects avoided (the paper's own code): selection on the test set (here only
validation), the reward in percentage points, one initialisation for every child, data and
architecture transformations from different tables (one table here), a non-invariant head.
"""

from __future__ import annotations

import dataclasses
import math
import os
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from bayesym.data.image_dataset import ImageDataset
from bayesym.marglik.evaluation import evaluate
from bayesym.runs import resolve_device
from bayesym.selectors.base import SelectionResult, SelectionRun, Selector, parameter_count
from bayesym.selectors.budget import BudgetExhausted, BudgetMeter, BudgetTooSmall
from bayesym.selectors.config_checks import (
    check_fields,
    check_optional_positive_int,
    check_positive,
    check_positive_int,
)
from bayesym.selectors.dqn import PAPER_EPSILON_PHASES, DQNAgent, EpsilonSchedule, ReplayMemory
from bayesym.selectors.executor import CandidateExecutor
from bayesym.selectors.spaces.base import DataShape
from bayesym.selectors.spaces.pixel import PixelSpace, state_label
from bayesym.selectors.static import best_on_validation
from bayesym.selectors.training import OptimizerSettings, make_optimizer, train_epochs

__all__ = [
    "AENConfig",
    "AENSearch",
    "AENSelector",
    "ChildEnvironment",
    "Environment",
    "aen_reward",
    "child_seed",
    "scaled_episode_length",
    "train_state",
]

NUM_BITS = 12


@dataclass(frozen=True)
class AENConfig:
    """Configuration of :class:`AENSelector` (the paper's values where they fit a CPU).

    Attributes:
        child_epochs: epochs a child trains (paper: 4 epochs of 4,000 images).
        retrain_epochs: epochs each of the top-k states is retrained (paper: 10 of 10,000).
        top_k: states retrained at the end (paper: 20). The defaults of these three fit a
            CPU: a budget of 16 epochs pays for one child and the retraining.
        children: new children to train when the budget sets no epochs (paper: 1,200).
        episode_length: toggle actions per episode; None: the paper's 101 per 1,200 children
            scaled to the planned children, at least 24 (:func:`scaled_episode_length`).
        q_hidden: hidden widths of the Q network (paper: 400, 400, 400).
        q_lr: Adam learning rate of the Q network.
        q_batch_size: replay transitions per Q-learning step (paper: 512).
        min_replay: transitions in memory before the agent starts learning.
        q_updates_per_step: Q-learning steps per environment step (paper: 1).
        replay_capacity: replay memory size (paper: 10,000).
        gamma: discount (paper: 0.5).
        target_sync: new children between copies of the Q network into the target network.
        epsilon_phases: ``(epsilon, children)`` phases, scaled to the number of children
            (default: the paper's Table 1).
        max_steps_per_child: the search stops after this many environment steps per planned
            child (a greedy agent may only revisit known states).
        optimizer: the children's optimiser (paper: Adam 1e-3, batch 64).
        checkpoint_every: new children between checkpoints.
        seed: the run seed (agent, children's initialisations and batch orders).
    """

    child_epochs: float = 1.0
    retrain_epochs: float = 5.0
    top_k: int = 3
    children: int = 200
    episode_length: int | None = None
    q_hidden: tuple[int, ...] = (400, 400, 400)
    q_lr: float = 1e-3
    q_batch_size: int = 512
    min_replay: int = 32
    q_updates_per_step: int = 1
    replay_capacity: int = 10_000
    gamma: float = 0.5
    target_sync: int = 2
    epsilon_phases: tuple[tuple[float, int], ...] = PAPER_EPSILON_PHASES
    max_steps_per_child: int = 50
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    checkpoint_every: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive(self, "child_epochs", "retrain_epochs")
        check_positive_int(
            self, "top_k", "children", "q_batch_size", "min_replay",
            "q_updates_per_step", "replay_capacity", "target_sync", "max_steps_per_child",
            "checkpoint_every",
        )  # fmt: skip
        check_optional_positive_int(self, "episode_length")
        check_fields(self, ("gamma",), lambda v: 0 <= v < 1, "must lie in [0, 1)")
        object.__setattr__(self, "q_hidden", tuple(self.q_hidden))
        phases = tuple((float(e), int(n)) for e, n in self.epsilon_phases)
        object.__setattr__(self, "epsilon_phases", phases)
        EpsilonSchedule(phases)  # validates


def scaled_episode_length(planned: int) -> int:
    """The paper's 101 steps per episode for 1,200 children, scaled to ``planned``, at least 24.

    A search of a few dozen children with the paper's episodes would run one episode: its
    early random walk wanders far from the empty state and the greedy phase starts there.
    """
    return max(2 * NUM_BITS, round(101 * planned / 1200))


def aen_reward(accuracy: float, baseline_accuracy: float) -> float:
    r"""The paper's Eq. 18 with fractions: :math:`x e^{|x|}`, :math:`x = acc - acc_0`."""
    x = accuracy - baseline_accuracy
    return x * math.exp(abs(x))


def child_seed(seed: int, state: int) -> int:
    """The initialisation and batch-order seed of the child of ``state`` in run ``seed``."""
    return zlib.crc32(f"aen-child:{seed}:{state}".encode()) & 0x7FFFFFFF


class Environment(ABC):
    """Scores new states for the search (the children; a table in tests)."""

    @abstractmethod
    def can_evaluate(self) -> bool:
        """Whether one more new state can be paid for."""

    @abstractmethod
    def evaluate(self, state: int) -> dict[str, Any]:
        """Score a new state (raise :class:`BudgetExhausted` if it cannot be paid for).

        Returns:
            At least ``accuracy`` (a fraction); optionally ``nll``, ``parameters`` and
            ``model_state`` (the child's weights, kept for the best child).
        """


@dataclass(frozen=True)
class _ChildJob:
    """What one child's training needs (sent to the executor)."""

    space: PixelSpace
    shape: DataShape
    train: ImageDataset
    valid: ImageDataset
    optimizer: OptimizerSettings
    device: torch.device


@dataclass(frozen=True)
class _Child:
    state: int
    epochs: float
    seed: int


def _train_child(job: _ChildJob, child: _Child) -> dict[str, Any]:
    """Train the child of a state from its seed; best validation accuracy over its epochs."""
    torch.manual_seed(child.seed)
    model = job.space.network(child.state, job.shape).to(job.device)
    optimizer = make_optimizer(model.parameters(), job.optimizer)
    marks = [float(e) for e in range(1, math.floor(child.epochs) + 1)]
    if not marks or marks[-1] < child.epochs:
        marks.append(child.epochs)
    scores, done = [], 0.0
    for k, mark in enumerate(marks):
        train_epochs(
            model, job.train, epochs=mark - done, optimizer=optimizer,
            batch_size=job.optimizer.batch_size, seed=child.seed * 1_000 + k,
        )  # fmt: skip
        done = mark
        scores.append(_evaluate(model, job.valid))
    best = max(range(len(scores)), key=lambda i: (scores[i]["accuracy"], -i))
    return {
        "accuracy": scores[best]["accuracy"],
        "nll": scores[best]["nll"],
        "final": scores[-1],
        "epoch_accuracies": [s["accuracy"] for s in scores],
        "parameters": parameter_count(model),
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def _evaluate(model: torch.nn.Module, data: ImageDataset) -> dict[str, float]:
    return evaluate(model, data, batch_size=500)


def train_state(
    space: PixelSpace,
    state: int,
    train: ImageDataset,
    valid: ImageDataset,
    *,
    epochs: float,
    seed: int,
    optimizer: OptimizerSettings | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train the network of ``state`` exactly as the selector trains a child or a top-k state.

    For fixed networks beside the search (the paper's single-transformation MLPs): seed
    :func:`child_seed` ``(seed, state)``, ``epochs`` epochs, validation after every epoch.

    Returns:
        ``(model, scores)``: the trained network and ``final`` (validation metrics of the
        returned weights), ``accuracy`` (the best over the epochs), ``epoch_accuracies``.
    """
    job = _ChildJob(space, DataShape.of(train), train, valid,
                    optimizer or OptimizerSettings(), resolve_device(device))  # fmt: skip
    scores = _train_child(job, _Child(state, epochs, child_seed(seed, state)))
    model = space.network(state, job.shape)
    model.load_state_dict(scores.pop("model_state"))
    return model.to(job.device), scores


class ChildEnvironment(Environment):
    """Children trained on the training split and scored on validation (module docstring).

    Args:
        job: space, data shape, splits, optimiser and device of every child.
        epochs: epochs per child.
        seed: the run seed.
        meter: charged ``ceil(epochs * N)`` passes before every child.
        executor: trains each child.
        reserve: passes kept back for the final retraining.
    """

    def __init__(
        self,
        job: _ChildJob,
        *,
        epochs: float,
        seed: int,
        meter: BudgetMeter,
        executor: CandidateExecutor,
        reserve: int = 0,
    ) -> None:
        self.job, self.epochs, self.seed = job, epochs, seed
        self.meter, self.executor, self.reserve = meter, executor, reserve
        self.passes = math.ceil(epochs * len(job.train))

    def can_evaluate(self) -> bool:
        """Whether the budget pays for one more child and still for the retraining."""
        return self.meter.can_afford(self.passes + self.reserve)

    def evaluate(self, state: int) -> dict[str, Any]:
        """Charge, train and score the child of ``state`` (through the executor)."""
        self.meter.charge(self.passes)
        self.meter.count_candidate()
        child = _Child(state, self.epochs, child_seed(self.seed, state))
        (result,) = self.executor.map(_train_child, [child], shared=self.job)
        self.meter.count_eval(len(self.job.valid) * len(result["epoch_accuracies"]))
        return result


class AENSearch:
    """The DQN search over states (module docstring); resumable through :meth:`state_dict`.

    Args:
        config: the selector's configuration.
        planned: new states (children) to evaluate, the start state included.
    """

    def __init__(self, config: AENConfig, planned: int) -> None:
        self.config = config
        self.planned = planned
        self.schedule = EpsilonSchedule(config.epsilon_phases).scaled(planned)
        self.episode_length = config.episode_length or scaled_episode_length(planned)
        self.agent = DQNAgent(
            NUM_BITS, config.q_hidden, gamma=config.gamma, lr=config.q_lr,
            batch_size=config.q_batch_size, seed=config.seed,
        )  # fmt: skip
        self.memory = ReplayMemory(config.replay_capacity)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.visited: dict[int, dict[str, Any]] = {}
        self.history: list[dict[str, Any]] = []
        self.best_child: dict[str, Any] | None = None  # {"state", "model_state"}
        self.state, self.steps, self.episode, self.episode_step = 0, 0, 0, 0

    @property
    def max_steps(self) -> int:
        """Environment steps after which the search stops."""
        return self.config.max_steps_per_child * self.planned

    def _score(self, env: Environment, state: int) -> None:
        epsilon = self.schedule.epsilon(len(self.visited))
        result = env.evaluate(state)
        baseline = self.visited[0]["accuracy"] if self.visited else result["accuracy"]
        reward = aen_reward(result["accuracy"], baseline)
        record = {
            "child": len(self.visited),
            "state": state,
            "label": state_label(state),
            "epsilon": epsilon,
            "valid_accuracy": result["accuracy"],
            "valid_nll": result.get("nll"),
            "reward": reward,
            "parameters": result.get("parameters"),
            "step": self.steps,
            "episode": self.episode,
        }
        self.visited[state] = {"accuracy": result["accuracy"], "reward": reward,
                               "nll": result.get("nll"), "order": len(self.visited)}  # fmt: skip
        self.history.append(record)
        if "model_state" in result and (
            self.best_child is None or reward > self.visited[self.best_child["state"]]["reward"]
        ):
            self.best_child = {"state": state, "model_state": result["model_state"]}
        if len(self.visited) % self.config.target_sync == 0:
            self.agent.sync_target()

    def finished(self, env: Environment) -> bool:
        """Whether the search has evaluated its children, run out of steps or of budget."""
        return (
            len(self.visited) >= self.planned
            or self.steps >= self.max_steps
            or (not env.can_evaluate() and bool(self.visited))
        )

    def step(self, env: Environment) -> bool:
        """One environment step (the start state first); whether a new state was evaluated."""
        if not self.visited:
            try:
                self._score(env, 0)
            except BudgetExhausted as error:
                raise BudgetTooSmall(f"no AEN child fits: {error}") from None
            return True
        if self.episode_step >= self.episode_length:
            self.state, self.episode_step, self.episode = 0, 0, self.episode + 1
        epsilon = self.schedule.epsilon(len(self.visited))
        action = self.agent.act(self.state, epsilon, self.generator)
        nxt = self.state ^ (1 << action)
        new = nxt not in self.visited
        if new:
            try:
                if not env.can_evaluate():
                    raise BudgetExhausted("no budget for another child")
                self._score(env, nxt)
            except BudgetExhausted:  # spent (e.g. the wall clock ran out): stop here
                self.steps = self.max_steps
                return False
        self.memory.push(self.state, action, nxt, self.visited[nxt]["reward"])
        if len(self.memory) >= self.config.min_replay:
            for _ in range(self.config.q_updates_per_step):
                self.agent.learn(self.memory, self.generator)
        self.state, self.steps, self.episode_step = nxt, self.steps + 1, self.episode_step + 1
        return new

    def run(
        self,
        env: Environment,
        *,
        checkpoint: Path | None = None,
        progress: bool = False,
        extra: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        """Step until :meth:`finished`, checkpointing every ``checkpoint_every`` new states.

        Args:
            env: scores new states.
            checkpoint: file to save the search into (atomically).
            progress: show a progress bar over the planned children.
            extra: called at every save; its entries are saved beside the search's.
        """
        bar = tqdm(total=self.planned, initial=len(self.visited), desc="aen children",
                   disable=not progress, leave=False)  # fmt: skip
        try:
            while not self.finished(env):
                if self.step(env):
                    bar.update(1)
                    last = self.history[-1]
                    bar.set_postfix(eps=last["epsilon"], best=self.best_accuracy())
                    if checkpoint is not None and (
                        len(self.visited) % self.config.checkpoint_every == 0
                    ):
                        self.save(checkpoint, extra() if extra else None)
        finally:
            bar.close()
        if checkpoint is not None:
            self.save(checkpoint, extra() if extra else None)

    def best_accuracy(self) -> float:
        """Best child validation accuracy so far."""
        return max((v["accuracy"] for v in self.visited.values()), default=math.nan)

    def top_states(self, k: int) -> list[int]:
        """The ``k`` states of highest reward (ties: first visited)."""
        ranked = sorted(self.visited, key=lambda s: (-self.visited[s]["reward"],
                                                     self.visited[s]["order"]))  # fmt: skip
        return ranked[:k]

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the search exactly."""
        return {
            "planned": self.planned,
            "agent": self.agent.state_dict(),
            "memory": self.memory.state_dict(),
            "generator": self.generator.get_state(),
            "visited": self.visited,
            "history": self.history,
            "best_child": self.best_child,
            "counters": [self.state, self.steps, self.episode, self.episode_step],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`."""
        if int(state["planned"]) != self.planned:
            raise ValueError(
                f"AEN checkpoint planned {state['planned']} children, this run {self.planned}"
            )
        self.agent.load_state_dict(state["agent"])
        self.memory.load_state_dict(state["memory"])
        self.generator.set_state(state["generator"])
        self.visited = {int(k): dict(v) for k, v in state["visited"].items()}
        self.history = [dict(h) for h in state["history"]]
        self.best_child = state["best_child"]
        self.state, self.steps, self.episode, self.episode_step = state["counters"]

    def save(self, path: Path, extra: Mapping[str, Any] | None = None) -> None:
        """Write :meth:`state_dict` (and ``extra``) to ``path`` atomically."""
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save({**self.state_dict(), **(extra or {})}, tmp)
        os.replace(tmp, path)


def _planned_children(config: AENConfig, meter: BudgetMeter, train_size: int) -> tuple[int, int]:
    """(children the budget pays for, passes reserved for the retraining)."""
    child = math.ceil(config.child_epochs * train_size)
    retrain = config.top_k * math.ceil(config.retrain_epochs * train_size)
    if meter.limit is None:
        return config.children, retrain
    meter.require(child + retrain, f"one AEN child and the retraining of {config.top_k} states")
    return (meter.limit - retrain) // child, retrain


class AENSelector(Selector, name="aen", spaces={"pixel"}, config=AENConfig):
    """Deep Q-learning over pixel-transformation states (module docstring)."""

    config: AENConfig

    def search(self, selection: SelectionRun) -> SelectionResult:
        """Search, retrain the top-k states and return the best on validation."""
        train, valid, space = selection.train, selection.valid, selection.space
        assert isinstance(space, PixelSpace)
        shape = DataShape.of(train)
        space.config(0, shape)  # refuses a multi-channel task before any work
        cfg = self.config
        meter = selection.meter
        planned, reserve = _planned_children(cfg, meter, len(train))
        folder = selection.claim()
        executor = selection.executor
        job = _ChildJob(space, shape, train, valid, cfg.optimizer, selection.device)
        search = AENSearch(cfg, planned)
        checkpoint = None if folder is None else folder / "search.pt"
        if checkpoint is not None and checkpoint.is_file():
            saved = torch.load(checkpoint, weights_only=False)
            search.load_state_dict(saved)
            meter.load_state_dict(saved["meter"])
        if meter.exhausted:
            raise BudgetTooSmall(
                f"the wall-clock budget of {meter.budget.wall_seconds:g} s is spent before the "
                "first AEN child"
            )
        env = ChildEnvironment(job, epochs=cfg.child_epochs, seed=cfg.seed, meter=meter,
                               executor=executor, reserve=reserve)  # fmt: skip
        search.run(env, checkpoint=checkpoint, progress=selection.progress,
                   extra=lambda: {"meter": meter.state_dict()})  # fmt: skip
        return self._finish(search, job, meter, executor, space, folder)

    def _finish(
        self,
        search: AENSearch,
        job: _ChildJob,
        meter: BudgetMeter,
        executor: CandidateExecutor,
        space: PixelSpace,
        folder: Path | None,
    ) -> SelectionResult:
        cfg = self.config
        passes = math.ceil(cfg.retrain_epochs * len(job.train))
        candidates = []
        for state in search.top_states(cfg.top_k):
            try:
                meter.charge(passes)
            except BudgetExhausted:  # wall-clock limit: retrain no further states
                break
            meter.count_candidate()
            candidates.append(_Child(state, cfg.retrain_epochs, child_seed(cfg.seed, state)))
        retrained = executor.map(_train_child, candidates, shared=job)
        meter.count_eval(sum(len(r["epoch_accuracies"]) for r in retrained) * len(job.valid))
        finals = [r["final"] for r in retrained]
        if retrained:
            best = best_on_validation(finals)
            state, weights, valid = candidates[best].state, retrained[best], finals[best]
            model_state, epochs = weights["model_state"], cfg.retrain_epochs
        else:  # nothing retrained: the best child's own weights
            assert search.best_child is not None
            state, model_state = search.best_child["state"], search.best_child["model_state"]
            valid = {"accuracy": search.visited[state]["accuracy"],
                     "nll": search.visited[state]["nll"]}  # fmt: skip
            epochs = cfg.child_epochs
        model = space.network(state, job.shape)
        model.load_state_dict(model_state)
        model = model.to(job.device)
        scores = {
            "reward": search.visited[state]["reward"],
            "child_valid_accuracy": search.visited[state]["accuracy"],
            "valid_accuracy": float(valid["accuracy"]),
        }
        history = [*search.history] + [
            {"retrained": state_label(c.state), "state": c.state, "valid": f,
             "epoch_accuracies": r["epoch_accuracies"]}
            for c, r, f in zip(candidates, retrained, finals, strict=True)
        ]  # fmt: skip
        return self.result(
            space,
            model,
            choices=tuple(dataclasses.replace(c, scores=scores) for c in space.describe(model)),
            valid={"accuracy": float(valid["accuracy"]), "nll": float(valid["nll"])},
            cost=meter.cost(final_model_epochs=float(epochs)),
            history=tuple(history),
        )
