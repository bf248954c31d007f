"""The figure of an EquiNAS_D run: the mixture weights ``z`` of every block over training.

One panel per block (in network order), each a stacked area of :math:`z_K` over the search
epochs (epoch 0 is the initialisation), one colour per subgroup ``K`` shared by all panels, as
the EquiNAS paper's Figs. 2 and 6-8. Retraining epochs of the discretised variant are not
shown (``z`` no longer changes). Written with matplotlib's Agg backend.

Example:
    >>> history = [
    ...     {"phase": "search", "epoch": 0, "z": {"blocks.0": {"C1": 0.5, "D4": 0.5}}},
    ...     {"phase": "search", "epoch": 1, "z": {"blocks.0": {"C1": 0.4, "D4": 0.6}}},
    ... ]
    >>> figure = plot_mixture_history(history)
    >>> [ax.get_title() for ax in figure.axes]
    ['blocks.0']
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["mixture_series", "plot_mixture_history"]

GROUP_ORDER = ("C1", "D1", "C2", "D2", "C4", "D4")
"""Stacking order of the subgroups (from the trivial group up to D4); others follow."""


def mixture_series(
    history: Sequence[Mapping[str, Any]],
) -> tuple[list[int], dict[str, dict[str, list[float]]]]:
    """The search records' epochs, and ``{block: {group: [z at each epoch]}}``.

    Raises:
        ValueError: if no search record holds mixture weights.
    """
    records = [r for r in history if r.get("phase", "search") == "search" and "z" in r]
    if not records:
        raise ValueError("plot_mixture_history: the history holds no search record with 'z'")
    epochs = [int(r["epoch"]) for r in records]
    series: dict[str, dict[str, list[float]]] = {}
    for r in records:
        for block, weights in r["z"].items():
            for group, value in weights.items():
                series.setdefault(block, {}).setdefault(group, []).append(float(value))
    return epochs, series


def _ordered(groups: Sequence[str]) -> list[str]:
    known = [g for g in GROUP_ORDER if g in groups]
    return known + sorted(g for g in groups if g not in GROUP_ORDER)


def plot_mixture_history(
    history: Sequence[Mapping[str, Any]], path: str | Path | None = None, title: str | None = None
) -> Any:
    """Plot ``z`` per block over the search epochs of an EquiNAS_D ``history``.

    Args:
        history: :attr:`SelectionResult.history <bayesym.selectors.SelectionResult.history>`
            of ``equinas-d`` (records with ``phase``, ``epoch`` and ``z``).
        path: if given, the figure is saved there (PNG, 120 dpi) and closed.
        title: figure title (default: "EquiNAS_D mixture weights per block").

    Returns:
        The matplotlib figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs, series = mixture_series(history)
    blocks = list(series)
    groups = _ordered(list(dict.fromkeys(g for b in blocks for g in series[b])))
    tab10 = plt.get_cmap("tab10")
    colour = {g: tab10(i % 10) for i, g in enumerate(groups)}
    columns = min(4, len(blocks))
    rows = math.ceil(len(blocks) / columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(3.0 * columns, 2.4 * rows + 0.6), squeeze=False, sharey=True
    )
    for ax, block in zip(axes.flat, blocks, strict=False):
        present = [g for g in groups if g in series[block]]
        ax.stackplot(
            epochs,
            [series[block][g] for g in present],
            labels=present,
            colors=[colour[g] for g in present],
        )
        ax.set_title(block, fontsize=9)
        ax.set_ylim(0.0, 1.0)
        ax.set_xlim(epochs[0], max(epochs[-1], epochs[0] + 1))
        ax.set_xlabel("search epoch", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(blocks) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("mixture weight z", fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour[g]) for g in groups]
    figure.legend(handles, groups, loc="upper right", ncol=len(groups), fontsize=8)
    figure.suptitle(title or "EquiNAS_D mixture weights per block", x=0.02, ha="left", fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 0.93))
    if path is not None:
        figure.savefig(path, dpi=120)
        plt.close(figure)
    return figure
