"""Atomic checkpoints, and the one rule deciding whether a saved run may resume."""

from __future__ import annotations

import dataclasses
import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "IGNORED_CONFIG_KEYS",
    "config_defaults",
    "config_differences",
    "load_checkpoint",
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


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` with ``torch.save`` to a temporary file, then rename it into place.

    A run killed while writing leaves the previous checkpoint intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (CPU tensors stay on CPU)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location="cpu", weights_only=False)
