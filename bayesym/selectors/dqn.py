r"""Deep Q-learning over bit-vector states with toggle actions (the agent of the AEN search).

A state is an integer whose ``num_bits`` bits are the features of the Q network; action ``a``
toggles bit ``a``. The pieces follow the AEN paper (Basu et al., Sec. 4.2-4.3, Table 1):

* :class:`QNetwork`: ``num_bits -> hidden -> ... -> num_bits`` with ReLUs, the 0/1 input divided
  by 10 (the reference network), one Q value per action, ``Q: [B, num_bits] -> [B, num_bits]``;
* :class:`ReplayMemory`: the last ``capacity`` transitions ``(s, a, s', r)``, sampled uniformly;
* :class:`EpsilonSchedule`: :math:`\varepsilon` as a function of the number of *new* states
  evaluated (the paper counts trained children), Table 1's phases scaled to any total;
* :class:`DQNAgent`: :math:`\varepsilon`-greedy actions, one Huber-loss Adam step per
  environment step on :math:`r + \gamma \max_{a'} Q_{\text{target}}(s', a')` (no terminal
  states), and a target network copied from the Q network on demand.

Every random draw of the agent uses the :class:`torch.Generator` it is given, never the global
RNG, so the search is reproducible next to seeded child training, and its state is part of the
checkpoint (:meth:`DQNAgent.state_dict`, :meth:`ReplayMemory.state_dict`).

Example:
    >>> schedule = EpsilonSchedule.paper().scaled(120)
    >>> [schedule.epsilon(n) for n in (0, 19, 20, 119)]
    [1.0, 1.0, 0.9, 0.01]
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bayesym.checks import is_positive_int

__all__ = [
    "PAPER_EPSILON_PHASES",
    "DQNAgent",
    "EpsilonSchedule",
    "QNetwork",
    "ReplayMemory",
    "state_bits",
]

PAPER_EPSILON_PHASES: tuple[tuple[float, int], ...] = (
    (1.0, 200),
    (0.9, 100),
    (0.8, 100),
    (0.7, 100),
    (0.6, 100),
    (0.5, 100),
    (0.4, 100),
    (0.3, 50),
    (0.2, 50),
    (0.1, 50),
    (0.05, 50),
    (0.01, 200),
)
"""Table 1 of the AEN paper: ``(epsilon, new children trained at it)``, 1,200 children in all."""


def state_bits(states: Tensor | Sequence[int], num_bits: int) -> Tensor:
    """The 0/1 float bit vectors ``[B, num_bits]`` of integer states (bit ``i`` in column ``i``)."""
    states = torch.as_tensor(states, dtype=torch.int64).reshape(-1, 1)
    return ((states >> torch.arange(num_bits)) & 1).float()


class QNetwork(nn.Module):
    """MLP from a state's bits to one Q value per toggle action.

    Args:
        num_bits: bits of a state (= actions).
        hidden: widths of the hidden layers (the paper: ``(400, 400, 400)``).

    Shape:
        ``bits: [B, num_bits] -> [B, num_bits]``.
    """

    def __init__(self, num_bits: int, hidden: Sequence[int]) -> None:
        super().__init__()
        sizes = [num_bits, *hidden, num_bits]
        layers: list[nn.Module] = []
        for k, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(a, b))
            if k < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, bits: Tensor) -> Tensor:
        """Q values of every toggle action (the input scaled by 1/10, as the reference does)."""
        return self.net(bits / 10.0)


class ReplayMemory:
    """The last ``capacity`` transitions ``(state, action, next_state, reward)``.

    Args:
        capacity: transitions kept (oldest dropped first).
    """

    def __init__(self, capacity: int) -> None:
        if not is_positive_int(capacity):
            raise ValueError(f"ReplayMemory: capacity must be a positive int, got {capacity!r}")
        self.capacity = capacity
        self.transitions: list[tuple[int, int, int, float]] = []
        self._next = 0

    def __len__(self) -> int:
        return len(self.transitions)

    def push(self, state: int, action: int, next_state: int, reward: float) -> None:
        """Store one transition (overwriting the oldest once full)."""
        item = (int(state), int(action), int(next_state), float(reward))
        if len(self.transitions) < self.capacity:
            self.transitions.append(item)
        else:
            self.transitions[self._next] = item
        self._next = (self._next + 1) % self.capacity

    def sample(
        self, batch_size: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``min(batch_size, len)`` transitions drawn uniformly without replacement.

        Returns:
            ``(states [B], actions [B], next_states [B], rewards [B])``.
        """
        take = min(batch_size, len(self.transitions))
        index = torch.randperm(len(self.transitions), generator=generator)[:take].tolist()
        rows = [self.transitions[i] for i in index]
        states, actions, nexts, rewards = zip(*rows, strict=True)
        return (
            torch.tensor(states),
            torch.tensor(actions),
            torch.tensor(nexts),
            torch.tensor(rewards, dtype=torch.float32),
        )

    def state_dict(self) -> dict[str, Any]:
        """The transitions and the write position (for a checkpoint)."""
        return {"transitions": list(self.transitions), "next": self._next}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.transitions = [tuple(t) for t in state["transitions"]]
        self._next = int(state["next"])


@dataclass(frozen=True)
class EpsilonSchedule:
    r""":math:`\varepsilon` per number of new states evaluated: phases of ``(epsilon, count)``.

    Attributes:
        phases: ``(epsilon, count)`` in order; after the last phase its epsilon stays.
    """

    phases: tuple[tuple[float, int], ...]

    def __post_init__(self) -> None:
        if not self.phases:
            raise ValueError("EpsilonSchedule: needs at least one phase")
        for epsilon, count in self.phases:
            if not 0 <= epsilon <= 1 or count < 0:
                raise ValueError(
                    f"EpsilonSchedule: phase ({epsilon}, {count}) needs 0 <= epsilon <= 1 and "
                    "count >= 0"
                )

    @classmethod
    def paper(cls) -> EpsilonSchedule:
        """Table 1 of the AEN paper (1,200 new children)."""
        return cls(PAPER_EPSILON_PHASES)

    @property
    def total(self) -> int:
        """New states over all phases."""
        return sum(count for _, count in self.phases)

    def scaled(self, total: int) -> EpsilonSchedule:
        """The same phases with their boundaries scaled to ``total`` new states.

        Phase boundaries are ``round(cumulative count * total / self.total)``; a phase may
        get no state when ``total`` is small.
        """
        if not is_positive_int(total):
            raise ValueError(f"EpsilonSchedule.scaled: total must be a positive int, got {total!r}")
        bounds, cumulative = [], 0
        for _, count in self.phases:
            cumulative += count
            bounds.append(round(cumulative * total / self.total))
        counts = [b - a for a, b in zip([0, *bounds[:-1]], bounds, strict=True)]
        return EpsilonSchedule(
            tuple((eps, n) for (eps, _), n in zip(self.phases, counts, strict=True))
        )

    def epsilon(self, evaluated: int) -> float:
        """Epsilon after ``evaluated`` new states."""
        cumulative = 0
        for epsilon, count in self.phases:
            cumulative += count
            if evaluated < cumulative:
                return epsilon
        return self.phases[-1][0]


class DQNAgent:
    r"""Epsilon-greedy deep Q-learning with a replay memory and a target network.

    Args:
        num_bits: bits of a state (= actions).
        hidden: hidden widths of the Q network.
        gamma: discount :math:`\gamma` (the paper: 0.5).
        lr: Adam learning rate of the Q network.
        batch_size: transitions per learning step.
        seed: seed of the Q network's initialisation.
    """

    def __init__(
        self,
        num_bits: int,
        hidden: Sequence[int],
        *,
        gamma: float,
        lr: float,
        batch_size: int,
        seed: int,
    ) -> None:
        self.num_bits = num_bits
        self.gamma = gamma
        self.batch_size = batch_size
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.q = QNetwork(num_bits, hidden)
        self.target = copy.deepcopy(self.q)
        self.optimizer = torch.optim.Adam(self.q.parameters(), lr=lr)

    def q_values(self, state: int) -> Tensor:
        """``Q(state, .)``: ``[num_bits]``."""
        with torch.no_grad():
            return self.q(state_bits([state], self.num_bits))[0]

    def act(self, state: int, epsilon: float, generator: torch.Generator) -> int:
        """A random action with probability ``epsilon``, else the greedy one (first on ties)."""
        explore = torch.rand((), generator=generator).item() < epsilon
        random_action = int(torch.randint(self.num_bits, (), generator=generator))
        if explore:
            return random_action
        return int(self.q_values(state).argmax())

    def learn(self, memory: ReplayMemory, generator: torch.Generator) -> float:
        """One Adam step of the Huber loss on a replay batch; returns the loss."""
        states, actions, nexts, rewards = memory.sample(self.batch_size, generator)
        q = self.q(state_bits(states, self.num_bits)).gather(1, actions[:, None])[:, 0]
        with torch.no_grad():
            best_next = self.target(state_bits(nexts, self.num_bits)).max(dim=1).values
            target = rewards + self.gamma * best_next
        loss = F.smooth_l1_loss(q, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        value = float(loss.detach())
        return value if math.isfinite(value) else math.nan

    def sync_target(self) -> None:
        """Copy the Q network's weights into the target network."""
        self.target.load_state_dict(self.q.state_dict())

    def state_dict(self) -> dict[str, Any]:
        """Q network, target network and optimiser (for a checkpoint)."""
        return {
            "q": self.q.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.q.load_state_dict(state["q"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
