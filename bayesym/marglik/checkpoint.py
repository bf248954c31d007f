"""Atomic checkpoints, and the one rule deciding whether a saved run may resume."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import random
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "TRAINER_KEYS",
    "IGNORED_CONFIG_KEYS",
    "CheckpointError",
    "checkpoint_epoch",
    "config_defaults",
    "config_differences",
    "load_checkpoint",
    "previous_checkpoint_path",
    "read_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]

IGNORED_CONFIG_KEYS = frozenset({"progress"})
"""Keys that older versions saved in a configuration although they change no result."""


def config_defaults(config_class: type) -> dict[str, Any]:
    """JSON form of the defaults of a (nested) configuration dataclass.

    A field whose type is itself a configuration dataclass with defaults (e.g. the curvature
    settings inside the trainer's) contributes its own defaults as a nested dict.
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config_class):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            continue
        out[f.name] = _as_json(value)
    return out


def _as_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _as_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return json.loads(json.dumps(value))


def config_differences(
    previous: Mapping[str, Any], current: Mapping[str, Any], config_class: type | None = None
) -> list[str]:
    """Dotted names of the settings that differ between two JSON forms of a configuration.

    This is the one rule for resuming a saved run (the trainer's checkpoints and run
    directories both use it): every configuration field changes the result, so any
    difference refuses the resume. Keys of :data:`IGNORED_CONFIG_KEYS` are ignored, and a
    field missing from ``previous`` (a run saved before the field existed) counts as its
    default in ``config_class``, so older runs resume when the new field keeps its default.

    Example:
        >>> config_differences({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}, "d": 0})
        ['b.c', 'd']
    """
    if config_class is not None:
        previous = _merge(config_defaults(config_class), previous)
    return _differences(previous, current, "")


def _merge(defaults: Mapping[str, Any], saved: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(defaults)
    for key, value in saved.items():
        nested = isinstance(value, Mapping) and isinstance(out.get(key), Mapping)
        out[key] = _merge(out[key], value) if nested else value
    return out


def _differences(previous: Mapping[str, Any], current: Mapping[str, Any], prefix: str) -> list[str]:
    missing = object()
    out = []
    for key in sorted((set(previous) | set(current)) - IGNORED_CONFIG_KEYS):
        old, new = previous.get(key, missing), current.get(key, missing)
        if isinstance(old, Mapping) and isinstance(new, Mapping) and old and new:
            out += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            out.append(f"{prefix}{key}")
    return out


def rng_state() -> dict[str, Any]:
    """The global RNG states (torch CPU/CUDA, numpy, random)."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),  # noqa: NPY002 - user code may use the global RNG
        "random": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["random"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def previous_checkpoint_path(path: str | Path) -> Path:
    """Where :func:`save_checkpoint` keeps the checkpoint it replaced (``x.pt``: ``x.prev.pt``)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(
    path: str | Path, payload: dict[str, Any], *, keep_previous: bool = True
) -> None:
    """Write ``payload`` with ``torch.save`` to a temporary file, then rename it into place.

    A run killed while writing leaves the previous checkpoint intact; with ``keep_previous``
    the checkpoint being replaced stays as :func:`previous_checkpoint_path`, the fallback of
    :func:`load_checkpoint` should the newest one turn out unreadable. A failed write (full
    or read-only disk, an interrupt) removes the temporary file and leaves both in place.

    Raises:
        OSError: naming the file and the fix, with the ``errno`` of the failure.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    target = path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)
        if keep_previous and path.is_file():
            target = previous_checkpoint_path(path)
            _keep_as_previous(path, target)
            target = path
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _write_error(err, target) from err
        raise


def _keep_as_previous(path: Path, previous: Path) -> None:
    """Make the checkpoint at ``path`` also ``previous`` (a hard link, else a copy)."""
    staged = previous.with_name(previous.name + ".tmp")
    staged.unlink(missing_ok=True)
    try:
        try:
            os.link(path, staged)
        except OSError:  # no hard links on this file system
            shutil.copyfile(path, staged)
        os.replace(staged, previous)
    finally:
        staged.unlink(missing_ok=True)


def _write_error(err: OSError, path: Path) -> OSError:
    """One line naming the checkpoint that could not be written and the fix."""
    code = err.errno or errno.EIO
    reason = err.strerror or str(err)
    return OSError(
        code,
        f"cannot write the checkpoint {path}: {reason}; free disk space or make "
        f"{path.parent} writable, then rerun the same command to resume from the last "
        "checkpoint",
        str(path),
    )


TRAINER_KEYS: tuple[str, ...] = ("epoch",)
"""What every checkpoint of :class:`~bayesym.marglik.MarglikTrainer` holds (a file without it is
not one; other checkpoints of this format, e.g. the selectors', need not hold it)."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be read (truncated, empty or corrupted), and no usable fallback."""


def read_checkpoint(
    path: str | Path, required: tuple[str, ...] = ()
) -> tuple[dict[str, Any], Path]:
    """The newest readable checkpoint at ``path`` or its previous one, and the file it came from.

    A checkpoint is readable when it loads as a mapping holding every key of ``required``.

    Raises:
        FileNotFoundError: if neither file exists.
        CheckpointError: if none of them can be read (one line naming the file and the fix).
    """
    payload, used, _ = _read_newest(Path(path), required)
    return payload, used


def _read_newest(
    path: Path, required: tuple[str, ...] = ()
) -> tuple[dict[str, Any], Path, list[tuple[Path, str]]]:
    """The first readable of ``path`` and its previous checkpoint, and why the others were not."""
    candidates = [p for p in (path, previous_checkpoint_path(path)) if p.is_file()]
    if not candidates:
        raise FileNotFoundError(f"no checkpoint at {path}")
    errors = []
    for candidate in candidates:
        try:
            payload = torch.load(candidate, map_location="cpu", weights_only=False)
        except Exception as err:  # truncated, empty or corrupted: torch raises many kinds
            errors.append((candidate, _first_line(err)))
            continue
        if not isinstance(payload, dict):
            errors.append((candidate, f"holds a {type(payload).__name__}, not a checkpoint"))
            continue
        missing = [key for key in required if key not in payload]
        if not missing:
            return payload, candidate, errors
        errors.append((candidate, f"lacks {missing}: not a checkpoint of this kind"))
    files = " nor the previous one ".join(f"{file} ({reason})" for file, reason in errors)
    which = "both are" if len(errors) > 1 else "it is"
    raise CheckpointError(
        f"cannot read the checkpoint {files}: {which} truncated or corrupted; delete "
        f"{'them' if len(errors) > 1 else 'it'} to start the run over from epoch 0, or use "
        "another run directory"
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def load_checkpoint(path: str | Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (CPU tensors stay on CPU).

    ``required``: keys the mapping must hold to count as readable (e.g. :data:`TRAINER_KEYS`).

    If the newest checkpoint is unreadable (truncated, empty, corrupted) or missing, the
    previous one (:func:`previous_checkpoint_path`) is loaded instead, with a warning that
    says so.

    Raises:
        FileNotFoundError: if there is no checkpoint at ``path`` nor a previous one.
        CheckpointError: if neither can be read (one line naming the file and the fix).
    """
    path = Path(path)
    payload, used, errors = _read_newest(path, required)
    if used != path:
        state = f"unreadable ({errors[0][1]})" if errors else "missing"
        warnings.warn(
            f"the checkpoint {path} is {state}; resuming from the previous checkpoint "
            f"{used.name}" + (f" (epoch {payload['epoch']})" if "epoch" in payload else ""),
            stacklevel=2,
        )
    return payload


def checkpoint_epoch(path: str | Path) -> int | None:
    """The epoch a run would resume from: that of the newest readable checkpoint at ``path``.

    ``None`` if there is none (no file, or none readable); never warns or raises.
    """
    try:
        payload, _ = read_checkpoint(path, TRAINER_KEYS)
    except (FileNotFoundError, CheckpointError):
        return None
    return int(payload["epoch"])
