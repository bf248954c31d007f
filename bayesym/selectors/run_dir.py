"""A selector's run directory: what run it belongs to, and what a finished run leaves in it.

:meth:`bayesym.selectors.base.SelectionRun.claim` calls :func:`claim_run_dir` with the identity
of the run (selector, configuration, space, budget, data sizes): a new directory records it in
``selector.json``; a directory that holds another run's identity is refused with the settings
that differ (the one resume rule of :func:`bayesym.marglik.checkpoint.config_differences`),
so a checkpoint is never resumed under another configuration. When the selection is done,
``Selector.fit`` calls :func:`finish_run`, which writes ``selection.json`` (the result without
the model) and ``model.pt`` (the selected model's ``state_dict``), both atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bayesym.marglik.checkpoint import config_differences
from bayesym.selectors.budget import Budget
from bayesym.selectors.jsonable import jsonable

if TYPE_CHECKING:  # pragma: no cover
    from bayesym.selectors.base import SelectionResult
    from bayesym.selectors.spaces.base import SearchSpace

__all__ = ["IDENTITY_FILE", "claim_run_dir", "finish_run", "run_identity"]

IDENTITY_FILE = "selector.json"
"""Name of the file recording a run directory's identity."""


def run_identity(
    selector: str,
    config: Mapping[str, Any],
    space: SearchSpace,
    budget: Budget,
    train_size: int,
    valid_size: int,
) -> dict[str, Any]:
    """The JSON identity of a selection run (what must match for it to resume)."""
    return jsonable(
        {
            "selector": selector,
            "config": dict(config),
            "space": space.config_json(),
            "budget": {"epochs": budget.epochs, "wall_seconds": budget.wall_seconds},
            "train_size": train_size,
            "valid_size": valid_size,
        }
    )


def claim_run_dir(run_dir: str | Path | None, identity: Mapping[str, Any]) -> Path | None:
    """Create ``run_dir`` for a run of ``identity``, or check that it already holds that run.

    Returns:
        ``run_dir`` as a ``Path`` (``None`` when no directory was given).

    Raises:
        ValueError: if the directory holds a run of another identity (naming what differs).
    """
    if run_dir is None:
        return None
    run_dir = Path(run_dir)
    path = run_dir / IDENTITY_FILE
    if path.is_file():
        previous = json.loads(path.read_text())
        changed = config_differences(previous, dict(identity))
        if changed:
            raise ValueError(
                f"{run_dir} holds a run of another selection (differs in {changed}); use a new "
                "run directory"
            )
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dict(identity), indent=1))
    os.replace(tmp, path)
    return run_dir


def finish_run(run_dir: Path | None, result: SelectionResult) -> None:
    """Write ``selection.json`` and the selected model's ``model.pt`` into ``run_dir``."""
    if run_dir is None:
        return
    if result.model is not None:
        tmp = run_dir / "model.pt.tmp"
        state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
        torch.save(state, tmp)
        os.replace(tmp, run_dir / "model.pt")
    result.save(run_dir / "selection.json")
