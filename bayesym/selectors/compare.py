"""Compare selectors on one task, one search space, one data split per seed, one budget.

:func:`compare` runs every *cell* — a (seed, selector) pair — into ``out_dir/seed{s}/{cell}/``:

* per seed one :func:`~bayesym.selectors.split.selection_split`: training and validation
  images carved from the task's training file, the test file apart; every selector of that
  seed gets the very same ``train`` and ``valid`` objects and nothing else — **no selector
  ever receives test data**;
* the selector's :meth:`~bayesym.selectors.base.Selector.fit` runs with the cell directory as
  its ``run_dir`` (checkpoints, ``selection.json``, ``model.pt``); afterwards the harness
  scores the returned model on the test split **once** and writes ``test.json``. A cell with
  ``test.json`` is finished and skipped when the comparison runs again; an unfinished one
  resumes from its checkpoint, so an interrupted comparison, restarted, ends with the same
  tables (but for wall seconds);
* static baselines: every baseline of ``baselines`` is a cell ``static:<name>`` (directory
  ``static-<name>``) with the full budget; if ``static`` is among the selectors, the row
  ``static`` is the baseline cell with the best validation accuracy per seed
  (:func:`~bayesym.selectors.static.best_on_validation`; cost: the sum of the baseline cells),
  which is what the static selector returns on all the baselines at once.

The tables and the figure are written by :mod:`bayesym.selectors.compare_report`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bayesym.checks import is_positive_int
from bayesym.data.registry import TASKS
from bayesym.marglik.checkpoint import config_differences
from bayesym.runs import resolve_device
from bayesym.selectors.base import SelectionResult, Selector
from bayesym.selectors.budget import Budget
from bayesym.selectors.executor import CandidateExecutor
from bayesym.selectors.jsonable import jsonable
from bayesym.selectors.registry import SELECTORS, SPACES, make_space
from bayesym.selectors.spaces.base import SearchSpace
from bayesym.selectors.split import Resize, SelectionSplit, selection_split
from bayesym.selectors.training import evaluate_model

__all__ = ["Cell", "CellResult", "CompareConfig", "compare", "selector_config"]

STATIC = "static"
"""Name of the static selector, whose baselines become cells of their own."""


def _names(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"CompareConfig.{what} must be a tuple of names, got {value!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"CompareConfig.{what} lists a name twice: {list(value)}")
    return tuple(value)


def _check_choice(
    what: str, names: tuple[str, ...], valid: tuple[str, ...], where: str = ""
) -> None:
    listed = ", ".join(valid) or "none"
    for name in names:
        if name not in valid:
            raise ValueError(f"unknown {what} {name!r}{where}; valid: {listed}")


@dataclass(frozen=True)
class CompareConfig:
    """What to compare (validated on construction, before any work).

    Attributes:
        task: a registered task (``bayesym data list``).
        space: a registered search space.
        selectors: registered selectors that support ``space``.
        baselines: static baselines of ``space`` trained as cells of their own (``()``:
            every baseline of the space if ``static`` is among the selectors, else none).
        seeds: one data split and one run of every selector per seed.
        budget_epochs: every cell's budget in training image passes / ``train_size``
            (``None``: each selector's own schedule).
        train_size: training images (carved from the task's training file).
        val_size: validation images (carved from the rest of the training file).
        test_size: seeded subset of the test split (``None``: all of it).
        image_size: resize images to ``image_size x image_size`` (``None``: as they are).
        space_options: keyword arguments of the space (e.g. ``{"width": 2}``).
        selector_options: selector -> configuration changes, dotted keys for nested
            settings (e.g. ``{"marglik": {"training.batch_size": 32}}``).
        root: Fashion-MNIST directory (``None``: the default).
    """

    task: str
    space: str
    selectors: tuple[str, ...]
    baselines: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    budget_epochs: float | None = None
    train_size: int = 1000
    val_size: int = 300
    test_size: int | None = None
    image_size: int | None = None
    space_options: Mapping[str, Any] = field(default_factory=dict)
    selector_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    root: str | None = None

    def __post_init__(self) -> None:
        _check_choice("task", (self.task,), tuple(TASKS))
        _check_choice("space", (self.space,), tuple(SPACES))
        selectors = _names(self.selectors, "selectors")
        if not selectors and not self.baselines:
            raise ValueError("CompareConfig: name at least one selector or baseline")
        _check_choice("selector", selectors, tuple(SELECTORS))
        for name in selectors:
            supported = SELECTORS[name].spaces
            if self.space not in supported:
                raise ValueError(
                    f"selector {name!r} does not support the {self.space!r} space; it supports: "
                    f"{', '.join(sorted(supported))}"
                )
        space = self.build_space()
        _names(self.baselines, "baselines")
        _check_choice(
            "baseline", self.baselines, space.baselines(), f" of the {self.space!r} space"
        )
        self._check_numbers()
        for name, options in self.selector_options.items():
            _check_choice("selector", (name,), selectors, " in selector_options")
            selector_config(SELECTORS[name], options, seed=0)  # raises for a bad option

    def _check_numbers(self) -> None:
        for name in ("train_size", "val_size", "test_size", "image_size"):
            value = getattr(self, name)
            if value is None and name in ("test_size", "image_size"):
                continue
            if not is_positive_int(value):
                raise ValueError(f"CompareConfig.{name} must be a positive int, got {value!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"CompareConfig.seeds must be distinct ints, got {self.seeds!r}")
        for seed in self.seeds:
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise ValueError(f"CompareConfig.seeds must be non-negative ints, got {seed!r}")
        if self.budget_epochs is not None and not (
            math.isfinite(self.budget_epochs) and self.budget_epochs > 0
        ):
            raise ValueError(
                f"CompareConfig.budget_epochs must be positive (or None), got {self.budget_epochs}"
            )

    def build_space(self) -> SearchSpace:
        """The search space with :attr:`space_options`.

        Raises:
            ValueError: for an option the space does not have (listing the ones it has).
        """
        space_class = SPACES[self.space]
        # every registered space is a dataclass; type[SearchSpace] cannot say so
        known = {f.name for f in dataclasses.fields(space_class)}  # type: ignore[arg-type]
        unknown = sorted(set(self.space_options) - known)
        if unknown:
            raise ValueError(
                f"the {self.space!r} space has no option(s) {unknown}; options: "
                f"{', '.join(sorted(known))}"
            )
        return make_space(self.space, **self.space_options)

    @property
    def budget(self) -> Budget:
        """Every cell's budget."""
        return Budget(epochs=self.budget_epochs)

    def baseline_cells(self) -> tuple[str, ...]:
        """The baselines that run as cells (see :attr:`baselines`)."""
        if self.baselines:
            return self.baselines
        return self.build_space().baselines() if STATIC in self.selectors else ()

    def cells(self) -> list[Cell]:
        """The cells of one seed, in the order they run (baselines first)."""
        cells = [
            Cell(f"{STATIC}:{b}", STATIC, _directory(f"{STATIC}-{b}"), b)
            for b in self.baseline_cells()
        ]
        cells += [Cell(s, s, s) for s in self.selectors if s != STATIC]
        return cells

    def labels(self) -> list[str]:
        """Row labels in table order: the selectors, then the baselines."""
        labels = [s for s in self.selectors if s != STATIC]
        if STATIC in self.selectors:
            labels.append(STATIC)
        return labels + [f"{STATIC}:{b}" for b in self.baseline_cells()]

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return jsonable(dataclasses.asdict(self))

    def identity(self) -> dict[str, Any]:
        """The settings every cell of an output directory must share (not the cell lists)."""
        out = self.to_json()
        for key in ("selectors", "baselines", "seeds"):
            out.pop(key)
        return out


def _directory(label: str) -> str:
    """A directory name for ``label`` (characters other than ``[A-Za-z0-9_.+-]`` as ``_``)."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", label)


@dataclass(frozen=True)
class Cell:
    """One selector run per seed.

    Attributes:
        label: the table row (``"marglik"``, ``"static:conv"``).
        selector: the registered selector.
        directory: the cell's directory name under ``seed{s}/``.
        baseline: the static baseline of a baseline cell.
    """

    label: str
    selector: str
    directory: str
    baseline: str | None = None


@dataclass(frozen=True)
class CellResult:
    """A finished cell: the selection (without the model) and its test metrics."""

    cell: Cell
    seed: int
    selection: SelectionResult
    test: Mapping[str, float]
    train_size: int


def _apply(config: Any, key: str, value: Any) -> Any:
    """``config`` with the dotted setting ``key`` replaced (nested frozen dataclasses)."""
    head, _, rest = key.partition(".")
    options = (
        [f.name for f in dataclasses.fields(config)] if dataclasses.is_dataclass(config) else []
    )
    if head not in options:
        raise ValueError(f"unknown setting {key!r}; settings here: {', '.join(options)}")
    if rest:
        value = _apply(getattr(config, head), rest, value)
    return dataclasses.replace(config, **{head: value})


def selector_config(
    selector_class: type[Selector], options: Mapping[str, Any], *, seed: int, **fixed: Any
) -> Any:
    """The configuration of a cell: defaults, then ``options`` and ``fixed``, then the seed."""
    config = selector_class.config_class()
    for key, value in {**options, **fixed}.items():
        config = _apply(config, key, value)
    if "seed" in {f.name for f in dataclasses.fields(config)}:
        config = dataclasses.replace(config, seed=seed)
    return config


def _write_json(path: Path, payload: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(jsonable(payload), indent=1))
    os.replace(tmp, path)


def _claim_out_dir(out_dir: Path, config: CompareConfig) -> None:
    """Record the comparison's settings, or refuse a directory of another comparison."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "compare_config.json"
    if path.is_file():
        previous = json.loads(path.read_text())
        changed = config_differences(previous.get("identity", {}), config.identity())
        if changed:
            raise ValueError(
                f"{out_dir} holds a comparison with other settings (differs in {changed}); use "
                "another --out directory"
            )
    _write_json(path, {"identity": config.identity(), "config": config.to_json()})


def _split(config: CompareConfig, seed: int) -> SelectionSplit:
    resize = None
    if config.image_size is not None:
        resize = Resize.to_side(config.image_size, TASKS[config.task].image_shape[1])
    return selection_split(
        config.task,
        train_size=config.train_size,
        val_size=config.val_size,
        seed=seed,
        root=config.root,
        resize=resize,
        test_size=config.test_size,
    )


def _finished(folder: Path, cell: Cell, seed: int) -> CellResult | None:
    if not (folder / "test.json").is_file() or not (folder / "selection.json").is_file():
        return None
    selection = SelectionResult.from_json(json.loads((folder / "selection.json").read_text()))
    test = json.loads((folder / "test.json").read_text())
    return CellResult(cell, seed, selection, test["metrics"], test["train_size"])


def _run_cell(
    config: CompareConfig,
    cell: Cell,
    seed: int,
    split: SelectionSplit,
    space: SearchSpace,
    folder: Path,
    *,
    device: torch.device,
    progress: bool,
    executor: CandidateExecutor | None,
) -> CellResult:
    """Fit the cell's selector on train/valid, then score its model on the test split once."""
    fixed = {} if cell.baseline is None else {"baselines": (cell.baseline,)}
    selector_class = SELECTORS[cell.selector]
    options = config.selector_options.get(cell.selector, {})
    selector = selector_class(selector_config(selector_class, options, seed=seed, **fixed))
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    result = selector.fit(
        split.train,
        split.valid,
        space=space,
        budget=config.budget,
        run_dir=folder,
        device=device,
        progress=progress,
        executor=executor,
    )
    if result.model is None:
        raise ValueError(f"selector {cell.selector!r} returned no model to score on the test split")
    test = evaluate_model(result.model, split.test)
    _write_json(folder / "test.json", {"metrics": test, "train_size": len(split.train)})
    return CellResult(cell, seed, dataclasses.replace(result, model=None), test, len(split.train))


def compare(
    config: CompareConfig,
    out_dir: str | Path,
    *,
    device: torch.device | str | None = None,
    progress: bool = True,
    executor: CandidateExecutor | None = None,
    log: Callable[[str], None] | None = None,
) -> list[CellResult]:
    """Run (or resume) the comparison into ``out_dir`` and write its tables and figure.

    Args:
        config: what to compare.
        out_dir: output directory (resumed if it holds this comparison).
        device: where to train (default CPU); the splits are moved there.
        progress: show the selectors' progress bars and a line per cell.
        executor: candidate executor passed to every selector.
        log: where the per-cell lines go (default: stderr when ``progress``).

    Returns:
        Every cell's result, seed by seed.

    Raises:
        ValueError: for a device that is not available, sizes beyond the task's training
            file, or an ``out_dir`` holding a comparison with other settings, before any work.
    """
    from bayesym.selectors.compare_report import write_outputs

    target = resolve_device(device)
    out_dir = Path(out_dir)
    first = _split(config, config.seeds[0])  # refuses sizes beyond the task before any write
    _claim_out_dir(out_dir, config)
    if log is None:
        log = (lambda line: print(line, file=sys.stderr, flush=True)) if progress else _quiet
    space = config.build_space()
    cells = config.cells()
    total, done = len(cells) * len(config.seeds), 0
    results: list[CellResult] = []
    for seed in config.seeds:
        split: SelectionSplit | None = None
        for cell in cells:
            done += 1
            folder = out_dir / f"seed{seed}" / cell.directory
            finished = _finished(folder, cell, seed)
            if finished is not None:
                log(f"[{done}/{total}] seed {seed} {cell.label}: finished earlier, skipped")
                results.append(finished)
                continue
            if split is None:
                split = first if seed == config.seeds[0] else _split(config, seed)
                split = SelectionSplit(
                    split.train.to(target), split.valid.to(target), split.test.to(target), seed
                )
            log(f"[{done}/{total}] seed {seed} {cell.label}: start")
            start = time.perf_counter()
            result = _run_cell(
                config, cell, seed, split, space, folder,
                device=target, progress=progress, executor=executor,
            )  # fmt: skip
            results.append(result)
            log(
                f"[{done}/{total}] seed {seed} {cell.label}: done in "
                f"{time.perf_counter() - start:.1f} s, valid accuracy "
                f"{result.selection.valid['accuracy']:.4f}, test accuracy "
                f"{result.test['accuracy']:.4f}"
            )
    write_outputs(config, results, out_dir, device=str(target))
    return results


def _quiet(line: str) -> None:
    del line
