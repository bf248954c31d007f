r"""What a selector may spend, and the meter every selector charges.

The budget unit is the **training image pass**: one forward and backward pass of one training
image, whatever the network. Every pass a selector makes on training data counts: MAP steps,
architecture steps, every candidate or child trained, curvature passes of the marglik.
Validation forward passes are counted separately (``eval_passes``) and not charged. Wall
seconds are always reported beside the passes, because a pass of a path-sum network costs
more than one of a plain convolution.

A :class:`Budget` of ``epochs=B`` on a training split of ``N`` images allows
:math:`\lceil B N\rceil` image passes. The :class:`BudgetMeter` is charged *before* the work
(a batch, a candidate); a charge is refused with :class:`BudgetExhausted` once the passes
already spent reach the limit, so a selector overruns by at most the one charge that crossed
it (one batch when it charges per batch).

Example:
    >>> meter = BudgetMeter(Budget(epochs=1.0), train_size=100)
    >>> meter.charge(64); meter.charge(64)   # the second charge crosses the limit of 100
    >>> meter.exhausted, meter.image_passes
    (True, 128)
    >>> meter.charge(64)
    Traceback (most recent call last):
    ...
    bayesym.selectors.budget.BudgetExhausted: budget of 100 training image passes ... 128 used
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bayesym.checks import is_positive_int

__all__ = ["Budget", "BudgetExhausted", "BudgetMeter", "BudgetTooSmall", "Cost"]


class BudgetExhausted(RuntimeError):
    """A charge was refused: the budget is spent."""


class BudgetTooSmall(ValueError):
    """A selector cannot do even its smallest unit of work within the budget it was given."""


@dataclass(frozen=True)
class Budget:
    """What a selector may spend.

    Attributes:
        epochs: training image passes divided by the size of the training split (every
            pass on training data counts, see the module docstring); ``None``: the
            selector's own schedule, whatever it costs (the cost is still reported).
        wall_seconds: optional hard stop in wall-clock seconds (``None``: none).
    """

    epochs: float | None = None
    wall_seconds: float | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "wall_seconds"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value <= 0):
                raise ValueError(f"Budget.{name} must be positive and finite or None, got {value}")

    def image_passes(self, train_size: int) -> int | None:
        """The pass limit on a training split of ``train_size`` images (``None``: no limit)."""
        return None if self.epochs is None else math.ceil(self.epochs * train_size)


@dataclass(frozen=True)
class Cost:
    """What a selector spent.

    Attributes:
        wall_seconds: wall-clock seconds of the selection (summed over resumed sessions).
        image_passes: training image passes, as the budget counts them.
        eval_passes: validation forward passes (not charged to the budget).
        candidates_trained: networks trained (1 for single-run selectors); a candidate
            whose result was reused (e.g. a revisited state) is not counted.
        final_model_epochs: epochs of training data the returned weights saw, along their
            lineage for selectors whose candidates inherit weights.
    """

    wall_seconds: float
    image_passes: int
    eval_passes: int
    candidates_trained: int
    final_model_epochs: float

    def epochs(self, train_size: int) -> float:
        """Image passes in units of epochs of a ``train_size``-image training split."""
        return self.image_passes / train_size


class BudgetMeter:
    """Counts what a selector spends and refuses work once its :class:`Budget` is spent.

    Args:
        budget: the budget.
        train_size: images in the training split (the unit of ``Budget.epochs``).
        clock: seconds since an arbitrary origin (default ``time.perf_counter``).
    """

    def __init__(
        self, budget: Budget, train_size: int, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        if not is_positive_int(train_size):
            raise ValueError(f"BudgetMeter: train_size must be a positive int, got {train_size!r}")
        self.budget = budget
        self.train_size = train_size
        self.limit = budget.image_passes(train_size)
        self.image_passes = 0
        self.eval_passes = 0
        self.candidates_trained = 0
        self._clock = clock
        self._seconds_before = 0.0
        self._started = clock()

    @property
    def wall_seconds(self) -> float:
        """Seconds spent, including earlier sessions of a resumed selection."""
        return self._seconds_before + self._clock() - self._started

    @property
    def remaining(self) -> int | None:
        """Image passes left (``None``: no pass limit); negative after the last overrun."""
        return None if self.limit is None else self.limit - self.image_passes

    @property
    def exhausted(self) -> bool:
        """Whether the pass limit is reached or the wall-clock limit passed."""
        if self.limit is not None and self.image_passes >= self.limit:
            return True
        wall = self.budget.wall_seconds
        return wall is not None and self.wall_seconds >= wall

    def can_afford(self, passes: int) -> bool:
        """Whether ``passes`` more image passes fit entirely in the budget."""
        return not self.exhausted and (self.remaining is None or passes <= self.remaining)

    def require(self, passes: int, what: str) -> None:
        """Refuse before any work if the budget cannot pay for ``passes`` (named ``what``).

        Raises:
            BudgetTooSmall: naming what does not fit and the budget that would.
        """
        if self.limit is not None and passes > self.limit:
            needed = passes / self.train_size
            raise BudgetTooSmall(
                f"{what} needs {passes} training image passes ({needed:.3g} epochs of "
                f"{self.train_size} images) but the budget allows {self.limit} "
                f"({self.budget.epochs:g} epochs); raise the budget to at least {needed:.3g} epochs"
            )

    def charge(self, passes: int) -> None:
        """Record ``passes`` training image passes about to be made.

        Raises:
            BudgetExhausted: if the budget was already spent before this charge.
            ValueError: for a negative count.
        """
        if passes < 0:
            raise ValueError(f"BudgetMeter.charge: passes must be >= 0, got {passes}")
        if self.exhausted:
            raise BudgetExhausted(self._spent_message())
        self.image_passes += passes

    def count_eval(self, passes: int) -> None:
        """Record validation forward passes (not charged to the budget)."""
        self.eval_passes += passes

    def count_candidate(self, number: int = 1) -> None:
        """Record networks trained."""
        self.candidates_trained += number

    def cost(self, final_model_epochs: float) -> Cost:
        """What has been spent, as a :class:`Cost`."""
        return Cost(
            wall_seconds=self.wall_seconds,
            image_passes=self.image_passes,
            eval_passes=self.eval_passes,
            candidates_trained=self.candidates_trained,
            final_model_epochs=final_model_epochs,
        )

    def state_dict(self) -> dict[str, Any]:
        """The counts (for a selector's checkpoint)."""
        return {
            "image_passes": self.image_passes,
            "eval_passes": self.eval_passes,
            "candidates_trained": self.candidates_trained,
            "wall_seconds": self.wall_seconds,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue counting from a checkpoint's :meth:`state_dict`."""
        self.image_passes = int(state["image_passes"])
        self.eval_passes = int(state["eval_passes"])
        self.candidates_trained = int(state["candidates_trained"])
        self._seconds_before = float(state["wall_seconds"])
        self._started = self._clock()

    def _spent_message(self) -> str:
        if self.limit is not None and self.image_passes >= self.limit:
            return (
                f"budget of {self.limit} training image passes ({self.budget.epochs:g} epochs "
                f"of {self.train_size} images) is spent: {self.image_passes} used"
            )
        return f"wall-clock budget of {self.budget.wall_seconds:g} s is spent"
