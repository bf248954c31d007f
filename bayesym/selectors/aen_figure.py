"""What an AEN search did: child validation accuracy per epsilon bucket, and the top states.

:func:`epsilon_buckets` groups the children of one or more searches (the ``history`` of an
``aen`` :class:`~bayesym.selectors.base.SelectionResult`) by the epsilon they were chosen at;
:func:`top_states` ranks the visited states by reward; :func:`plot_aen_search` draws one panel
per task: mean child validation accuracy ± standard error per epsilon bucket (epsilon falling
from left to right, the paper's Fig. 10), with the top states of each run listed beneath.

Example:
    >>> history = [{"child": 0, "epsilon": 1.0, "valid_accuracy": 0.5, "label": "none",
    ...             "reward": 0.0}, {"child": 1, "epsilon": 0.5, "valid_accuracy": 0.7,
    ...             "label": "hflip", "reward": 0.2}]
    >>> epsilon_buckets([history])
    {1.0: [0.5], 0.5: [0.7]}
    >>> top_states(history, 1)
    ['hflip']
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bayesym.groups.pixel_transforms import TRANSFORM_NAMES

__all__ = ["epsilon_buckets", "mean_and_se", "plot_aen_search", "top_states"]

History = Sequence[Mapping[str, Any]]


def _children(history: History) -> list[Mapping[str, Any]]:
    return [h for h in history if "child" in h]


def epsilon_buckets(histories: Sequence[History]) -> dict[float, list[float]]:
    """Child validation accuracies per epsilon, pooled over runs (epsilon descending)."""
    buckets: dict[float, list[float]] = {}
    for history in histories:
        for child in _children(history):
            buckets.setdefault(float(child["epsilon"]), []).append(float(child["valid_accuracy"]))
    return dict(sorted(buckets.items(), key=lambda item: -item[0]))


def mean_and_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error (NaN for an empty list; SE 0 for one value)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def top_states(history: History, k: int) -> list[str]:
    """Labels of the ``k`` children of highest reward (ties: first visited)."""
    ranked = sorted(_children(history), key=lambda h: (-float(h["reward"]), int(h["child"])))
    return [h["label"] for h in ranked[:k]]


def _short(label: str) -> str:
    """``"rot90+vflip"`` -> ``"1.3"`` (IAug numbers of the paper's Table 8); none -> ``"-"``."""
    if label == "none":
        return "-"
    if label == "all":
        return "all"
    return ".".join(str(TRANSFORM_NAMES.index(n) + 1) for n in label.split("+"))


def plot_aen_search(runs: Mapping[str, Sequence[History]], path: str | Path, k: int = 5) -> Path:
    """One panel per task: child validation accuracy per epsilon bucket; top-``k`` states.

    Args:
        runs: task name -> histories of its runs (one per seed).
        path: the image file to write.
        k: top states listed per run.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(runs)
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 4.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        buckets = epsilon_buckets(runs[name])
        eps = list(buckets)
        stats = [mean_and_se(buckets[e]) for e in eps]
        x = range(len(eps))
        ax.errorbar(x, [m for m, _ in stats], yerr=[2 * s for _, s in stats], fmt="o-",
                    capsize=3)  # fmt: skip
        ax.set_xticks(list(x), [f"{e:g}\n({len(buckets[e])})" for e in eps], fontsize=8)
        ax.set_xlabel("epsilon (children)")
        ax.set_ylabel("child validation accuracy (mean ± 2 SE)")
        ax.set_title(name)
        lines = [
            f"run {i}: " + "  ".join(_short(label) for label in top_states(h, k))
            for i, h in enumerate(runs[name])
        ]
        ax.text(0.0, -0.22, f"top {k} states (IAug numbers)\n" + "\n".join(lines),
                transform=ax.transAxes, fontsize=7, va="top", family="monospace")  # fmt: skip
    fig.subplots_adjust(wspace=0.35)
    path = Path(path)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
