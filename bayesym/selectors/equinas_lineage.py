"""EquiNAS_E's lineage figure: the group of every block of the best individual's ancestors.

:func:`lineage_table` follows the final best individual back to the all-D4 root
(:func:`lineage`) and, for every generation, takes the youngest
member of that line alive in the population: its groups per block and its validation
accuracy. :func:`plot_lineage` draws it (the EquiNAS paper's Fig. 1): on top the validation
accuracy of the line and of the population's best against the generation; below a
blocks x generations grid coloured by the group, from D4 (most symmetric) to C1. Written with
matplotlib's Agg backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bayesym.selectors.spaces.d4 import SUBGROUP_ORDER

__all__ = ["lineage", "lineage_table", "plot_lineage"]


def lineage(history: Sequence[Mapping[str, Any]], individual: int | None = None) -> list[dict]:
    """The ancestors of ``individual`` (default: the best of the last generation), root first.

    Each entry is the individual's record in the generation it was last seen alive, so its
    groups are those it had then.
    """
    records: dict[int, dict] = {}
    for generation in history:
        for record in generation["population"]:
            records[record["id"]] = dict(record)
    current = history[-1]["best"] if individual is None else individual
    chain = []
    while current is not None:
        chain.append(records[current])
        current = records[current]["parent"]
    return chain[::-1]


def lineage_table(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per generation: ``generation``, ``id``, ``groups`` and ``accuracy`` of the line's member.

    Raises:
        ValueError: for an empty history.
    """
    if not history:
        raise ValueError("lineage_table: empty history")
    line = [record["id"] for record in lineage(history)]
    rows = []
    for generation in history:
        alive = {r["id"]: r for r in generation["population"]}
        member = max((i for i in line if i in alive), key=line.index)
        record = alive[member]
        best = max(r["accuracy"] for r in generation["population"])
        rows.append(
            {
                "generation": generation["generation"],
                "id": member,
                "groups": list(record["groups"]),
                "accuracy": record["accuracy"],
                "population_best": best,
            }
        )
    return rows


def plot_lineage(history: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> None:
    """Draw the lineage of the best individual into ``path`` (PNG; module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    rows = lineage_table(history)
    generations = [r["generation"] for r in rows]
    order = list(SUBGROUP_ORDER)  # C1 ... D4
    depth = len(rows[0]["groups"])
    grid = [[order.index(r["groups"][b]) for r in rows] for b in range(depth)]
    viridis = plt.get_cmap("viridis")
    cmap = ListedColormap([viridis(i / (len(order) - 1)) for i in range(len(order))])
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(max(6.0, 0.35 * len(rows) + 3), 2.2 + 0.35 * depth + 2.0),
        gridspec_kw={"height_ratios": [1, max(1.0, 0.35 * depth)]}, sharex=True,
    )  # fmt: skip
    top.plot(generations, [r["accuracy"] for r in rows], "o-", label="best individual's line")
    top.plot(generations, [r["population_best"] for r in rows], "--", label="population best")
    top.set_ylabel("validation accuracy")
    top.grid(alpha=0.3)
    top.legend(fontsize=8, loc="lower right")
    bottom.imshow(
        grid,
        cmap=cmap,
        vmin=-0.5,
        vmax=len(order) - 0.5,
        aspect="auto",
        extent=(generations[0] - 0.5, generations[-1] + 0.5, depth - 0.5, -0.5),
    )
    if len(rows) <= 30:
        for b in range(depth):
            for r in rows:
                bottom.text(
                    r["generation"], b, r["groups"][b], ha="center", va="center", fontsize=7,
                    color="white" if order.index(r["groups"][b]) < 3 else "black",
                )  # fmt: skip
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.set_yticks(range(depth))
    bottom.set_ylabel("block")
    bottom.set_xlabel("generation")
    handles = [Patch(color=cmap(i), label=name) for i, name in enumerate(order)][::-1]
    bottom.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title or "EquiNAS_E: group per block along the best individual's lineage")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
