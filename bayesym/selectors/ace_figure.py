r"""The figure of an ACE run: :math:`|\gamma_i|`, :math:`\lambda_i` and :math:`u_i` per layer.

Three panels over the epochs of one ACE selection, one line per homotopic layer (coloured
from the first layer to the last): the homotopy coefficients :math:`|\gamma_i|` (log scale;
the equality constraint drives them to 0), the multipliers :math:`\lambda_i` (the price each
layer's symmetry costs the loss; free in sign for equality) and the slacks :math:`u_i` (the
non-equivariance each layer bought, resilient only). Input: the ``history`` of the
:class:`~bayesym.selectors.base.SelectionResult` of ``ace-eq`` or ``ace-resilient`` (or of its
``selection.json``). Written with matplotlib's Agg backend.

Example:
    >>> history = [
    ...     {"epoch": 1, "gamma": {"a": 0.5}, "lambda": {"a": 0.1}, "u": {"a": 0.0}},
    ...     {"epoch": 2, "gamma": {"a": 0.1}, "lambda": {"a": 0.3}, "u": {"a": 0.0}},
    ... ]
    >>> trajectories(history)["lambda"]["a"]
    [0.1, 0.3]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_ace_history", "trajectories"]

QUANTITIES: tuple[str, ...] = ("gamma", "lambda", "u")
"""The per-layer quantities of an ACE history record."""


def trajectories(history: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """``{quantity: {layer: [value per epoch]}}`` for ``gamma``, ``lambda`` and ``u``.

    Raises:
        ValueError: for an empty history or records without the ACE quantities.
    """
    if not history:
        raise ValueError("trajectories: the history is empty")
    missing = [q for q in QUANTITIES if q not in history[0]]
    if missing:
        raise ValueError(
            f"trajectories: the history has no {missing} per layer; is it an ACE selection's?"
        )
    return {
        quantity: {
            layer: [float(record[quantity][layer]) for record in history]
            for layer in history[0][quantity]
        }
        for quantity in QUANTITIES
    }


def plot_ace_history(
    history: Sequence[Mapping[str, Any]], path: str | Path, *, title: str = "ACE"
) -> None:
    r"""Draw :math:`|\gamma_i|`, :math:`\lambda_i` and :math:`u_i` over the epochs into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = trajectories(history)
    epochs = [int(record["epoch"]) for record in history]
    layers = list(series["gamma"])
    cmap = plt.get_cmap("viridis")
    colours = [cmap(i / max(1, len(layers) - 1)) for i in range(len(layers))]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    panels = (
        ("gamma", r"$|\gamma_i|$ (log)", lambda v: [max(abs(x), 1e-12) for x in v]),
        ("lambda", r"$\lambda_i$", lambda v: v),
        ("u", r"$u_i$", lambda v: v),
    )
    for ax, (quantity, label, transform) in zip(axes, panels, strict=True):
        for colour, layer in zip(colours, layers, strict=True):
            ax.plot(epochs, transform(series[quantity][layer]), color=colour, label=layer)
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].axhline(1e-3, color="grey", lw=0.8, ls="--")
    axes[1].axhline(0.0, color="grey", lw=0.8)
    axes[2].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"{title}: per-layer homotopy, multiplier and slack over training")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
