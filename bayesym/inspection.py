r"""Which symmetry did each layer choose? Effective parameters per layer and path (App. D).

For every prior group ``g`` (a path of a relaxed layer, or a whole layer) the report gives its
prior precision :math:`\delta_g` (high: switched off), squared weight norm
:math:`\lVert\theta_g\rVert^2`, number of parameters :math:`P_g`, effective number of parameters
:math:`\gamma_g = \sum \lambda/(\lambda+\delta_g)` (MacKay 1992, App. D.2), the *normalised*
:math:`\gamma_g / P_g` and, within its layer, the *share* :math:`\gamma_g / \sum_{g'} \gamma_{g'}`
and the *relative* effective number :math:`(\gamma_g/P_g) / \sum_{g'} (\gamma_{g'}/P_{g'})`
(Table 4 of the paper). The *effective layer type* is the path with the largest relative
effective number.

Example:
    >>> rows = [
    ...     PathStatistics("l0", "ffc", 1e6, 0.0, 100, 0.01),
    ...     PathStatistics("l0", "conv", 0.5, 2.0, 10, 8.0),
    ... ]
    >>> report = EffectiveParameterReport(rows)
    >>> report.effective_types()
    {'l0': 'conv'}
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bayesym.marglik.laplace import effective_parameters_per_group
from bayesym.priors import GaussianPrior, ParameterGroup
from curvature import KFAC

__all__ = [
    "EffectiveParameterReport",
    "PathStatistics",
    "effective_parameters",
    "plot_history",
    "report_from_history",
]


@dataclass(frozen=True)
class PathStatistics:
    r"""Statistics of one prior group (a path of a layer).

    Attributes:
        layer: the layer's name.
        path: the path's name within the layer.
        prior_precision: :math:`\delta_g`.
        weight_norm: :math:`\lVert\theta_g\rVert^2`.
        numel: :math:`P_g`.
        effective_parameters: :math:`\gamma_g`.
    """

    layer: str
    path: str
    prior_precision: float
    weight_norm: float
    numel: int
    effective_parameters: float

    @property
    def normalised(self) -> float:
        r""":math:`\gamma_g / P_g`."""
        return self.effective_parameters / self.numel


class EffectiveParameterReport:
    """Per-layer, per-path effective parameters with the App. D derived quantities."""

    columns = (
        "layer", "path", "prior_precision", "weight_norm", "numel", "effective_parameters",
        "normalised", "share", "relative", "effective_type",
    )  # fmt: skip

    def __init__(self, rows: Sequence[PathStatistics]) -> None:
        self.rows = list(rows)

    def layers(self) -> dict[str, list[PathStatistics]]:
        """Rows grouped by layer, in order of appearance."""
        out: dict[str, list[PathStatistics]] = {}
        for row in self.rows:
            out.setdefault(row.layer, []).append(row)
        return out

    def effective_types(self) -> dict[str, str]:
        """Layer -> the path with the largest relative effective number of parameters."""
        return {
            layer: max(paths, key=lambda r: r.normalised).path
            for layer, paths in self.layers().items()
        }

    def records(self) -> list[dict[str, Any]]:
        """One dict per row with every column of :attr:`columns`."""
        types = self.effective_types()
        out = []
        for layer, paths in self.layers().items():
            total = sum(r.effective_parameters for r in paths)
            total_normalised = sum(r.normalised for r in paths)
            for r in paths:
                out.append(
                    {
                        **asdict(r),
                        "normalised": r.normalised,
                        "share": r.effective_parameters / total if total > 0 else float("nan"),
                        "relative": r.normalised / total_normalised
                        if total_normalised > 0
                        else float("nan"),
                        "effective_type": types[layer],
                    }
                )
        return out

    def to_table(self) -> str:
        """A fixed-width text table (what ``bayesym report`` prints)."""
        header = (
            f"{'layer':<28} {'path':<10} {'precision':>10} {'|θ|²':>10} {'P':>9} {'γ':>10} "
            f"{'γ/P':>8} {'relative':>9}  type"
        )
        lines = [header, "-" * len(header)]
        for rec in self.records():
            lines.append(
                f"{rec['layer']:<28.28} {rec['path']:<10.10} {rec['prior_precision']:>10.3g} "
                f"{rec['weight_norm']:>10.3g} {rec['numel']:>9d} "
                f"{rec['effective_parameters']:>10.3g} "
                f"{rec['normalised']:>8.3f} {rec['relative']:>9.3f}  {rec['effective_type']}"
            )
        return "\n".join(lines)

    def to_csv(self, path: str | Path) -> None:
        """Write the records as CSV."""
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self.records())

    def to_json(self, path: str | Path) -> None:
        """Write the records and the effective layer types as JSON."""
        payload = {"rows": self.records(), "effective_types": self.effective_types()}
        Path(path).write_text(json.dumps(payload, indent=1))


def _rows(
    groups: Sequence[ParameterGroup],
    precisions: Mapping[str, float],
    norms: Mapping[str, float],
    gammas: Mapping[str, float],
) -> list[PathStatistics]:
    return [
        PathStatistics(
            layer=g.layer or "model",
            path=g.path,
            prior_precision=float(precisions[g.name]),
            weight_norm=float(norms[g.name]),
            numel=g.numel,
            effective_parameters=float(gammas[g.name]),
        )
        for g in groups
    ]


def effective_parameters(
    model: nn.Module,
    prior: GaussianPrior,
    kfac: KFAC,
    *,
    sigma: float | None = None,
    data_scale: float = 1.0,
) -> EffectiveParameterReport:
    """The effective-parameter report of ``model`` at its current parameters.

    Args:
        model: the network.
        prior: its prior (groups and precisions).
        kfac: curvature of ``model`` (e.g. ``trainer.last_kfac``).
        sigma: Gaussian noise (regression).
        data_scale: ``N / M`` if ``kfac`` was computed on ``M`` of ``N`` points.
    """
    with torch.no_grad():
        gammas = effective_parameters_per_group(kfac, prior, sigma=sigma, data_scale=data_scale)
        norms = dict(zip(prior.names, prior.squared_norms(model).tolist(), strict=True))
    return EffectiveParameterReport(
        _rows(prior.groups, prior.as_dict(), norms, {k: float(v) for k, v in gammas.items()})
    )


def report_from_history(
    history: Sequence[Mapping[str, Any]], groups: Sequence[ParameterGroup]
) -> EffectiveParameterReport:
    """The report of the last hyper step recorded in a training history."""
    rows = [r for r in history if r.get("effective_parameters")]
    if not rows:
        raise ValueError("the history has no hyper step (no effective parameters recorded)")
    last = rows[-1]
    return EffectiveParameterReport(
        _rows(groups, last["precisions"], last["weight_norms"], last["effective_parameters"])
    )


def plot_history(
    history: Sequence[Mapping[str, Any]], groups: Sequence[ParameterGroup], path: str | Path
) -> None:
    """Plot marglik, accuracies, and per layer the relative effective parameters over training.

    One panel per layer with more than one path (the ones with a choice to make), plus a
    panel of the training curves. Written with matplotlib's Agg backend.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hyper = [r for r in history if r.get("effective_parameters")]
    reports = [
        EffectiveParameterReport(
            _rows(groups, r["precisions"], r["weight_norms"], r["effective_parameters"])
        )
        for r in hyper
    ]
    layer_names = [
        name for name, paths in (reports[0].layers().items() if reports else []) if len(paths) > 1
    ]
    panels = 1 + len(layer_names)
    cols = min(4, panels)
    rows_n = -(-panels // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4 * cols, 3 * rows_n), squeeze=False)
    ax = axes[0][0]
    epochs = [r["epoch"] for r in history]
    for key in ("train_accuracy", "valid_accuracy"):
        if key in history[-1]:
            ax.plot(epochs, [r.get(key) for r in history], label=key.replace("_", " "))
    if hyper:
        ax2 = ax.twinx()
        ax2.plot(
            [r["epoch"] for r in hyper], [r["marglik"] for r in hyper], "k.--", label="marglik / N"
        )
        ax2.set_ylabel("log marglik / N")
    ax.set_xlabel("epoch")
    ax.set_title("training")
    ax.legend(loc="lower right", fontsize=7)
    for i, layer in enumerate(layer_names, start=1):
        ax = axes[i // cols][i % cols]
        hyper_epochs = [r["epoch"] for r in hyper]
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
