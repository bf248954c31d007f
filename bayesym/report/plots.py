"""Plots of a training history: training curves and each layer's choice over training."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bayesym.marglik.history import EpochRecord, hyper_records
from bayesym.priors import ParameterGroup
from bayesym.report.effective import report_from_record

__all__ = ["history_figure", "plot_history"]


def history_figure(
    history: Sequence[EpochRecord],
    groups: Sequence[ParameterGroup],
    title: str | None = None,
) -> Any:
    """The figure of :func:`plot_history` (a matplotlib ``Figure``, Agg backend).

    ``title`` (e.g. the task and the network) heads the figure.

    Panels: the training curves (accuracies, log marglik per datum); then for every layer
    with more than one path (the ones with a choice to make) two panels side by side: its
    paths' relative effective parameters over the hyper steps with each path's count-only
    share as a dashed line of the same colour, and the log10 precision ratios
    (:func:`log10_precision_ratios`) with a dotted line at 2 (switched off).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hyper = hyper_records(history)
    records = [report_from_record(r, groups).records() for r in hyper]
    layer_names = list(
        dict.fromkeys(
            rec["layer"]
            for rec in (records[0] if records else [])
            if sum(o["layer"] == rec["layer"] for o in records[0]) > 1
        )
    )
    cols = 4
    rows_n = 1 + -(-2 * len(layer_names) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4 * cols, 3 * rows_n), squeeze=False)
    _training_panel(axes[0][0], history, hyper)
    for ax in axes[0][1:]:
        ax.axis("off")
    hyper_epochs = [r.epoch for r in hyper]
    for i, layer in enumerate(layer_names):
        share_ax = axes[1 + 2 * i // cols][2 * i % cols]
        ratio_ax = axes[1 + (2 * i + 1) // cols][(2 * i + 1) % cols]
        _layer_panels(share_ax, ratio_ax, layer, hyper_epochs, records)
    for j in range(2 * len(layer_names), (rows_n - 1) * cols):
        axes[1 + j // cols][j % cols].axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _training_panel(ax: Any, history: Sequence[EpochRecord], hyper: Sequence[EpochRecord]) -> None:
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


def _layer_panels(
    share_ax: Any,
    ratio_ax: Any,
    layer: str,
    hyper_epochs: Sequence[int],
    records: Sequence[Sequence[Mapping[str, Any]]],
) -> None:
    per_path: dict[str, dict[str, list[float]]] = {}
    for step in records:
        for rec in step:
            if rec["layer"] == layer:
                path = per_path.setdefault(rec["path"], {"relative": [], "ratio": []})
                path["relative"].append(rec["relative"])
                path["ratio"].append(rec["log10_precision_ratio"])
                path["count_only"] = [rec["count_only"]]
    for name, values in per_path.items():
        (line,) = share_ax.plot(hyper_epochs, values["relative"], marker="o", label=name)
        share_ax.axhline(
            values["count_only"][0], color=line.get_color(), linestyle="--", linewidth=1,
            label=f"{name} count-only",
        )  # fmt: skip
        ratio_ax.plot(hyper_epochs, values["ratio"], marker="o", color=line.get_color(), label=name)
    ratio_ax.axhline(2.0, color="grey", linestyle=":", linewidth=1)
    share_ax.set_ylim(-0.02, 1.02)
    share_ax.set_title(layer, fontsize=8)
    share_ax.set_xlabel("epoch")
    share_ax.set_ylabel("relative effective params")
    share_ax.legend(fontsize=6)
    ratio_ax.set_title(f"{layer}: precisions", fontsize=8)
    ratio_ax.set_xlabel("epoch")
    ratio_ax.set_ylabel("log10 δ / δ_min")
    ratio_ax.legend(fontsize=6)


def plot_history(
    history: Sequence[EpochRecord],
    groups: Sequence[ParameterGroup],
    path: str | Path,
    title: str | None = None,
) -> None:
    """Plot the training curves and, per layer, shares and precision ratios over training.

    See :func:`history_figure` for the panels and the ``title``; written with matplotlib's
    Agg backend.
    """
    fig = history_figure(history, groups, title)
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=100)
    plt.close(fig)
