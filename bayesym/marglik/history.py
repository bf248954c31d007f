r"""The training history: one typed record per epoch, and its JSON form.

:class:`MarglikTrainer` appends one :class:`EpochRecord` per epoch; the run directory's
``history.json`` is the list of their :meth:`EpochRecord.to_json` forms, and the report, the
run functions and the CLI read it back with :func:`load_history`. The JSON keys are the field
names. A history written before ``squared_norms`` had its name (``weight_norms``) reads the
same.

Example:
    >>> record = EpochRecord(epoch=1, lr=1e-3, train_loss=0.9, train_nll=0.8,
    ...                      precisions={"fc": 1.0}, seconds=0.1)
    >>> record.is_hyper_step, EpochRecord.from_json(record.to_json()) == record
    (False, True)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["EpochRecord", "hyper_records", "load_history", "save_history"]

_LEGACY_KEYS = {"weight_norms": "squared_norms"}
"""JSON keys of older histories -> the field they now fill."""


@dataclass(frozen=True)
class EpochRecord:
    r"""What one epoch of :class:`~bayesym.marglik.MarglikTrainer` did.

    Attributes:
        epoch: 1-based epoch number.
        lr: learning rate of the parameters during the epoch.
        train_loss: mean MAP objective per datum, :math:`\text{NLL} + \tfrac{1}{2N}\sum_g
            \delta_g\lVert\theta_g\rVert^2`, averaged over the epoch's batches.
        train_nll: mean negative log likelihood per datum over the epoch.
        precisions: prior group -> precision :math:`\delta_g` at the end of the epoch.
        seconds: wall time of the epoch (MAP steps, hyper step, validation).
        train_accuracy: training accuracy over the epoch (classification only).
        marglik: log marginal likelihood per datum after the hyper step (``None``: no hyper
            step this epoch).
        effective_parameters: prior group -> effective number of parameters
            :math:`\gamma_g` after the hyper step.
        squared_norms: prior group -> :math:`\lVert\theta_g\rVert^2` at the hyper step.
        sigma: Gaussian noise (regression only).
        valid_nll: mean validation NLL (when validation data was given).
        valid_accuracy: validation accuracy (classification with validation data).
    """

    epoch: int
    lr: float
    train_loss: float
    train_nll: float
    precisions: Mapping[str, float]
    seconds: float
    train_accuracy: float | None = None
    marglik: float | None = None
    effective_parameters: Mapping[str, float] | None = None
    squared_norms: Mapping[str, float] | None = None
    sigma: float | None = None
    valid_nll: float | None = None
    valid_accuracy: float | None = None

    @property
    def is_hyper_step(self) -> bool:
        """Whether a hyper step (curvature + prior update) ended this epoch."""
        return self.marglik is not None

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-serialisable dict (keys: the field names)."""
        out = dataclasses.asdict(self)
        for key in ("precisions", "effective_parameters", "squared_norms"):
            if out[key] is not None:
                out[key] = dict(out[key])
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EpochRecord:
        """Read :meth:`to_json`'s form (also the keys of histories written by older versions).

        Raises:
            ValueError: if a required field is missing or a key is unknown.
        """
        data = {_LEGACY_KEYS.get(k, k): v for k, v in data.items()}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"history record has unknown keys {unknown}; expected {sorted(names)}")
        try:
            return cls(**data)
        except TypeError as err:
            raise ValueError(f"history record is incomplete: {err}") from None

    def with_updates(self, **changes: Any) -> EpochRecord:
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **changes)


def hyper_records(history: Iterable[EpochRecord]) -> list[EpochRecord]:
    """The records of the epochs that ended with a hyper step."""
    return [r for r in history if r.is_hyper_step]


def save_history(history: Sequence[EpochRecord], path: str | Path) -> None:
    """Write ``history`` as a JSON list to ``path`` (atomically: a temporary file, renamed).

    A failed write (full or read-only disk, an interrupt) removes the temporary file.
    """
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps([r.to_json() for r in history], indent=1))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def load_history(path: str | Path) -> list[EpochRecord]:
    """Read a history written by :func:`save_history` (or by an older version of bayesym).

    Raises:
        ValueError: if the file is not a JSON list of history records (the message names it).
    """
    path = Path(path)
    try:
        rows = json.loads(path.read_text())
        if not isinstance(rows, list):
            raise ValueError("not a JSON list")
        return [EpochRecord.from_json(row) for row in rows]
    except (ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"{path} is not a bayesym training history ({err})") from None
