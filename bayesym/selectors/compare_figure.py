"""The figure of a comparison: accuracy against cost, and the choices of every selector.

Left: test accuracy (mean ± standard error over seeds) against the training image passes each
selector spent, in epochs of the training split. Right: selectors x layers, each cell coloured
by the choice made for that layer (the most frequent over seeds), with a legend of the
choices. Written with matplotlib's Agg backend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from bayesym.selectors.compare import CompareConfig

__all__ = ["plot_comparison"]


def _short(layer: str) -> str:
    """``blocks.3.layer`` or ``blocks.3.conv`` -> ``3``; other names unchanged.

    One column per block, whatever a network calls the block's layer.
    """
    parts = layer.split(".")
    if len(parts) == 3 and parts[0] == "blocks" and parts[1].isdigit():
        return parts[1]
    return layer


def _dodged(xs: Sequence[float]) -> list[float]:
    """``xs`` with points at the same cost spread a little apart, so none hides another."""
    span = (max(xs) - min(xs)) or max(1.0, abs(xs[0]))
    out = list(xs)
    groups: dict[float, list[int]] = {}
    for i, x in enumerate(xs):
        groups.setdefault(round(x, 6), []).append(i)
    for members in groups.values():
        for k, i in enumerate(members):
            out[i] = xs[i] + (k - (len(members) - 1) / 2) * 0.015 * span
    return out


def _accuracy_panel(ax: Any, summary: Sequence[Mapping[str, Any]], colours: list) -> None:
    xs = _dodged([s["epochs"] for s in summary])
    for i, s in enumerate(summary):
        se = s["test_accuracy_se"]
        colour = colours[i % len(colours)]
        ax.errorbar(
            xs[i],
            s["test_accuracy"],
            yerr=0.0 if math.isnan(se) else se,
            fmt="o",
            capsize=4,
            color=colour,
            label=s["selector"],
        )
        ax.annotate(
            s["selector"],
            (xs[i], s["test_accuracy"]),
            xytext=(6, 0),
            textcoords="offset points",
            fontsize=7,
            color=colour,
            va="center",
        )
    ax.set_xlabel("training image passes (epochs of the training split)")
    ax.set_ylabel("test accuracy (mean ± SE over seeds)")
    ax.set_title("accuracy against cost")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")


def _cell_label(choice: str, width: int = 16, lines: int = 3) -> str:
    """``choice`` fitted into a cell: tied choices (``a/b``) one per line, long names cut."""
    parts = [p if len(p) <= width else p[: width - 1] + "…" for p in choice.split("/")]
    if len(parts) > lines:
        parts = [*parts[: lines - 1], f"+{len(parts) - lines + 1} more"]
    return "\n".join(parts)


def _choices_panel(ax: Any, summary: Sequence[Mapping[str, Any]]) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    rows = [{_short(layer): c for layer, c in s["choices"].items()} for s in summary]
    layers = list(dict.fromkeys(layer for row in rows for layer in row))
    kinds = sorted({c for row in rows for c in row.values()})
    index = {kind: i for i, kind in enumerate(kinds)}
    grid = [[index.get(row.get(layer), math.nan) for layer in layers] for row in rows]
    base = plt.get_cmap("tab20" if len(kinds) > 10 else "tab10")
    cmap = ListedColormap([base(i) for i in range(max(1, len(kinds)))])
    ax.imshow(grid, cmap=cmap, vmin=-0.5, vmax=len(kinds) - 0.5, aspect="auto")
    for r, row in enumerate(rows):
        for col, layer in enumerate(layers):
            label = _cell_label(row.get(layer, ""))
            ax.text(col, r, label, ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(layers)), layers)
    ax.set_yticks(range(len(summary)), [s["selector"] for s in summary])
    ax.set_xlabel("layer (block)")
    ax.set_title("choice per layer (most frequent over seeds)")
    handles = [Patch(color=cmap(index[k]), label=k) for k in kinds]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def plot_comparison(
    config: CompareConfig, summary: Sequence[Mapping[str, Any]], path: str | Path
) -> None:
    """Draw the comparison's two panels into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height = max(3.5, 0.45 * len(summary) + 1.5)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(13, height), gridspec_kw={"width_ratios": [1, 1.3]}
    )
    tab10 = plt.get_cmap("tab10")
    colours = [tab10(i) for i in range(10)]
    _accuracy_panel(left, summary, colours)
    _choices_panel(right, summary)
    budget = "own schedules" if config.budget_epochs is None else f"{config.budget_epochs:g} epochs"
    fig.suptitle(
        f"selectors on {config.task} ({config.space} space, {config.train_size} training images, "
        f"budget {budget}, {len(config.seeds)} seed(s))"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
