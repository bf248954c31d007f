"""The selector interface: every method that picks a symmetry per layer is a :class:`Selector`.

A selector receives a training and a validation split (never test data), a search space, a
budget and optionally a run directory to checkpoint into, and returns an immutable
:class:`SelectionResult`: the choice of every layer with its scores, the selected model, its
validation metrics and what the selection cost. The harness of :mod:`bayesym.selectors.compare`
scores the test split once, after :meth:`Selector.fit` returns.

Concrete selectors are final classes configured by one frozen dataclass each and found by name
in :data:`bayesym.selectors.registry.SELECTORS`.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from bayesym.data.image_dataset import ImageDataset
from bayesym.runs import resolve_device
from bayesym.selectors.budget import Budget, BudgetMeter, Cost
from bayesym.selectors.executor import CandidateExecutor, SerialExecutor
from bayesym.selectors.jsonable import jsonable
from bayesym.selectors.run_dir import claim_run_dir, finish_run, run_identity

if TYPE_CHECKING:  # pragma: no cover
    from _typeshed import DataclassInstance

    from bayesym.selectors.spaces.base import SearchSpace

__all__ = ["LayerChoice", "SelectionResult", "SelectionRun", "Selector", "parameter_count"]


@dataclass(frozen=True)
class LayerChoice:
    """What a selector chose for one layer.

    Attributes:
        layer: the layer's qualified name in the returned model (e.g. ``"blocks.3"``).
        choice: the selector's own word for the choice (``"D4"``, ``"conv"``,
            ``"hflip+rot90"``, ``"eq"``, ...).
        symmetry: the symmetry the returned layer obeys, in words (e.g. ``"translations"``,
            ``"translations x D4"``, ``"none"``); for soft choices, the symmetry of the path
            or component with the largest score.
        scores: the numbers behind the choice (relative effective parameters per path,
            mixture weights ``z`` per group, ``|γ|``/``λ``/``u``, ...).
    """

    layer: str
    choice: str
    symmetry: str
    scores: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {**dataclasses.asdict(self), "scores": dict(self.scores)}


@dataclass(frozen=True)
class SelectionResult:
    """What a selector returns (immutable; the model is not part of equality).

    Attributes:
        selector: registered name of the selector.
        space: name of the search space.
        config: the selector's configuration (JSON form).
        choices: one :class:`LayerChoice` per selectable layer, in network order.
        parameters: number of trainable parameters of the returned model.
        effective_parameters: effective number of parameters per prior group, for
            selectors with a prior (marglik, RPP); ``None`` otherwise.
        valid: validation metrics of the returned model (``accuracy``, ``nll``).
        cost: what the selection spent.
        history: one JSON-able record per epoch / generation / episode.
        model: the selected network (``None`` when read back from JSON).
    """

    selector: str
    space: str
    config: Mapping[str, Any]
    choices: tuple[LayerChoice, ...]
    parameters: int
    effective_parameters: Mapping[str, float] | None
    valid: Mapping[str, float]
    cost: Cost
    history: tuple[Mapping[str, Any], ...] = ()
    model: nn.Module | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The result without the model, JSON-serialisable (:meth:`from_json` reads it)."""
        return {
            "selector": self.selector,
            "space": self.space,
            "config": jsonable(self.config),
            "choices": [c.to_json() for c in self.choices],
            "parameters": self.parameters,
            "effective_parameters": None
            if self.effective_parameters is None
            else dict(self.effective_parameters),
            "valid": dict(self.valid),
            "cost": dataclasses.asdict(self.cost),
            "history": [jsonable(h) for h in self.history],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SelectionResult:
        """Read :meth:`to_json`'s form (``model`` is ``None``)."""
        return cls(
            selector=data["selector"],
            space=data["space"],
            config=data["config"],
            choices=tuple(LayerChoice(**c) for c in data["choices"]),
            parameters=int(data["parameters"]),
            effective_parameters=data["effective_parameters"],
            valid=data["valid"],
            cost=Cost(**data["cost"]),
            history=tuple(data["history"]),
        )

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_json` to ``path`` atomically."""
        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        tmp.replace(path)


@dataclass
class SelectionRun:
    """One call of :meth:`Selector.fit`, as its :meth:`Selector.search` sees it.

    :meth:`Selector.fit` has checked the space, resolved the device, started the budget meter
    and defaulted the executor. The search checks what else it needs (budget, data), then calls
    :meth:`claim` before its first write; ``fit`` writes the result into that directory.

    Attributes:
        train: the training split (the budget's unit is its size).
        valid: the validation split, carved from the training data.
        space: the search space (one the selector supports).
        meter: the budget meter every image pass is charged to.
        device: where to train.
        progress: show progress.
        executor: how independent candidates are trained.
        run_dir: the directory asked for (``None``: nothing is written).
        identity: what must match for ``run_dir`` to resume (see
            :func:`~bayesym.selectors.run_dir.run_identity`).
        folder: ``run_dir`` once claimed (``None`` before, or without a directory).
    """

    train: ImageDataset
    valid: ImageDataset
    space: SearchSpace
    meter: BudgetMeter
    device: torch.device
    progress: bool
    executor: CandidateExecutor
    run_dir: Path | None
    identity: Mapping[str, Any]
    folder: Path | None = None

    def claim(self) -> Path | None:
        """Create :attr:`run_dir` for this run or check that it holds this run; return it.

        Raises:
            ValueError: if the directory holds a run of another identity (naming what differs).
        """
        self.folder = claim_run_dir(self.run_dir, self.identity)
        return self.folder


def parameter_count(model: nn.Module) -> int:
    """Number of trainable scalar parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class Selector(ABC):
    """A method that selects the symmetry of every layer (see the module docstring).

    Subclasses name their registry key, the search spaces they support and their configuration
    class as class keywords, which set :attr:`name`, :attr:`spaces` and :attr:`config_class`
    (a keyword left out is inherited)::

        class AENSelector(Selector, name="aen", spaces={"pixel"}, config=AENConfig):
            config: AENConfig  # the type of self.config, for the type checker

    and implement :meth:`search`; :meth:`fit` is the same for every selector (checks, budget
    meter, run directory, result files).

    Args:
        config: the selector's configuration (default: ``config_class()``).
    """

    name: ClassVar[str]
    spaces: ClassVar[frozenset[str]]
    config_class: ClassVar[type[DataclassInstance]]
    config: DataclassInstance

    def __init_subclass__(
        cls,
        *,
        name: str | None = None,
        spaces: Iterable[str] | None = None,
        config: type[DataclassInstance] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if name is not None:
            cls.name = name
        if spaces is not None:
            cls.spaces = frozenset(spaces)
        if config is not None:
            cls.config_class = config

    def __init__(self, config: Any = None) -> None:
        if config is None:
            config = self.config_class()
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"selector {self.name!r} takes a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        self.config = config

    def check_space(self, space: SearchSpace) -> None:
        """Refuse a search space this selector does not support.

        Raises:
            ValueError: naming the selector, the space and the supported spaces.
        """
        if space.name not in self.spaces:
            raise ValueError(
                f"selector {self.name!r} does not support the {space.name!r} space; "
                f"it supports: {', '.join(sorted(self.spaces))}"
            )

    def fit(
        self,
        train: ImageDataset,
        valid: ImageDataset,
        *,
        space: SearchSpace,
        budget: Budget,
        run_dir: str | Path | None = None,
        device: torch.device | str | None = None,
        progress: bool = True,
        executor: CandidateExecutor | None = None,
    ) -> SelectionResult:
        """Select a network on ``train`` / ``valid`` within ``budget``.

        Args:
            train: the training split (the budget's unit is its size).
            valid: the validation split, carved from the training data.
            space: the search space (its name must be in :attr:`spaces`).
            budget: what the selector may spend.
            run_dir: directory to checkpoint into; a directory holding a checkpoint of the
                same configuration is resumed and reaches the same result.
            device: where to train (default CPU).
            progress: show progress.
            executor: how independent candidates are trained (default: serially in this
                process, :class:`~bayesym.selectors.executor.SerialExecutor`).

        Returns:
            The :class:`SelectionResult`.

        Raises:
            ValueError: for an unsupported space or a configuration/data mismatch, before
                any work.
            BudgetTooSmall: if not even the smallest unit of work fits in the budget.
        """
        self.check_space(space)
        run = SelectionRun(
            train=train,
            valid=valid,
            space=space,
            meter=BudgetMeter(budget, len(train)),
            device=resolve_device(device),
            progress=progress,
            executor=executor or SerialExecutor(),
            run_dir=None if run_dir is None else Path(run_dir),
            identity=run_identity(
                self.name, self.config_json(), space, budget, len(train), len(valid)
            ),
        )
        result = self.search(run)
        finish_run(run.folder, result)
        return result

    @abstractmethod
    def search(self, run: SelectionRun) -> SelectionResult:
        """The selection itself, on the checked inputs of ``run`` (see :class:`SelectionRun`).

        Raises:
            ValueError: for a configuration/data mismatch, before :meth:`SelectionRun.claim`.
            BudgetTooSmall: if not even the smallest unit of work fits in the budget.
        """

    def result(
        self,
        space: SearchSpace,
        model: nn.Module,
        *,
        choices: Sequence[LayerChoice],
        valid: Mapping[str, float],
        cost: Cost,
        history: Sequence[Mapping[str, Any]] = (),
        effective_parameters: Mapping[str, float] | None = None,
    ) -> SelectionResult:
        """This selector's :class:`SelectionResult` for ``model`` selected on ``space``."""
        return SelectionResult(
            selector=self.name,
            space=space.name,
            config=self.config_json(),
            choices=tuple(choices),
            parameters=parameter_count(model),
            effective_parameters=effective_parameters,
            valid=valid,
            cost=cost,
            history=tuple(history),
            model=model,
        )

    def config_json(self) -> dict[str, Any]:
        """The configuration's JSON form."""
        return jsonable(dataclasses.asdict(self.config))
