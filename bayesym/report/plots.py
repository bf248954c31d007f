"""Plots of a training history: training curves and each layer's choice over training."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bayesym.marglik.history import EpochRecord, hyper_records
from bayesym.priors import ParameterGroup
from bayesym.report.effective import report_from_record

__all__ = ["plot_history"]


def plot_history(
    history: Sequence[EpochRecord], groups: Sequence[ParameterGroup], path: str | Path
) -> None:
    """Plot marglik, accuracies, and per layer the relative effective parameters over training.

    One panel per layer with more than one path (the ones with a choice to make), plus a
    panel of the training curves. Written with matplotlib's Agg backend.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hyper = hyper_records(history)
    reports = [report_from_record(r, groups) for r in hyper]
    layer_names = [
        name for name, paths in (reports[0].layers().items() if reports else []) if len(paths) > 1
    ]
    panels = 1 + len(layer_names)
    cols = min(4, panels)
    rows_n = -(-panels // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4 * cols, 3 * rows_n), squeeze=False)
    ax = axes[0][0]
    epochs = [r.epoch for r in history]
    for key in ("train_accuracy", "valid_accuracy"):
        if getattr(history[-1], key) is not None:
            ax.plot(epochs, [getattr(r, key) for r in history], label=key.replace("_", " "))
    if hyper:
        ax2 = ax.twinx()
        ax2.plot([r.epoch for r in hyper], [r.marglik for r in hyper], "k.--", label="marglik / N")
        ax2.set_ylabel("log marglik / N")
    ax.set_xlabel("epoch")
    ax.set_title("training")
    ax.legend(loc="lower right", fontsize=7)
    for i, layer in enumerate(layer_names, start=1):
        ax = axes[i // cols][i % cols]
        hyper_epochs = [r.epoch for r in hyper]
        per_path: dict[str, list[float]] = {}
        for rep in reports:
            for rec in rep.records():
                if rec["layer"] == layer:
                    per_path.setdefault(rec["path"], []).append(rec["relative"])
        for name, values in per_path.items():
            ax.plot(hyper_epochs, values, marker="o", label=name)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(layer, fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylabel("relative effective params")
        ax.legend(fontsize=7)
    for j in range(panels, rows_n * cols):
        axes[j // cols][j % cols].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
