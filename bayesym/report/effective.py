r"""Which symmetry did each layer choose? Effective parameters per layer and path (App. D).

For every prior group ``g`` (a path of a relaxed layer, or a whole layer) the report gives its
prior precision :math:`\delta_g` (high: switched off), squared weight norm
:math:`\lVert\theta_g\rVert^2`, number of parameters :math:`P_g`, effective number of parameters
:math:`\gamma_g = \sum \lambda/(\lambda+\delta_g)` (MacKay 1992, App. D.2), the *normalised*
:math:`\gamma_g / P_g` and, within its layer, the *share* :math:`\gamma_g / \sum_{g'} \gamma_{g'}`
and the *relative* effective number :math:`(\gamma_g/P_g) / \sum_{g'} (\gamma_{g'}/P_{g'})`
(Table 4 of the paper). The *effective layer type* is the path with the largest relative
effective number.

Reading the relative share needs two more columns. While the precisions of a layer's paths are
close, their effective numbers are close too, and the relative share is then set by the
parameter counts alone: with equal :math:`\gamma` it is the *count-only share*
:math:`(1/P_g) / \sum_{g'} (1/P_{g'})`, whatever the data (a path with a quarter of another's
parameters gets 80 % of a two-path layer). The marginal likelihood has chosen between paths
only where their precisions have separated, which the *precision ratio*
:math:`\log_{10}(\delta_g / \min_{g'} \delta_{g'})` shows (0 for the layer's least
regularised path; ``> 2``: a path held a hundred times more tightly at zero, i.e. switched off).

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
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bayesym.layers.paths import PathSum, path_symmetry
from bayesym.marglik.history import EpochRecord, hyper_records
from bayesym.marglik.objective import effective_parameters_per_group
from bayesym.priors import GaussianPrior, ParameterGroup
from curvature import KFAC

__all__ = [
    "EffectiveParameterReport",
    "PathStatistics",
    "count_only_shares",
    "effective_parameter_report",
    "group_symmetries",
    "log10_precision_ratios",
    "path_label",
    "report_from_history",
    "report_from_record",
]


def count_only_shares(numels: Sequence[int]) -> list[float]:
    r"""The relative shares the paths of one layer would have with equal :math:`\gamma`.

    :math:`(1/P_g) / \sum_{g'} (1/P_{g'})`: the relative effective number
    :math:`(\gamma_g/P_g) / \sum_{g'} (\gamma_{g'}/P_{g'})` when every path has the same
    effective number of parameters, as it has (approximately) while the marginal likelihood
    has not yet separated the paths' precisions.

    Args:
        numels: :math:`P_g` of every path of the layer (positive).

    Raises:
        ValueError: if a count is not positive.

    Example:
        >>> count_only_shares([400, 100])  # CONV with 4x the parameters of GCONV
        [0.2, 0.8]
    """
    if any(n <= 0 for n in numels):
        raise ValueError(f"count_only_shares: parameter counts must be positive, got {numels}")
    total = sum(1.0 / n for n in numels)
    return [(1.0 / n) / total for n in numels]


def log10_precision_ratios(precisions: Sequence[float]) -> list[float]:
    r""":math:`\log_{10}(\delta_g / \min_{g'} \delta_{g'})` for the paths of one layer.

    0 for the layer's least regularised path; a path whose ratio exceeds 2 is held a hundred
    times more tightly at zero than the layer's preferred path (switched off).

    Raises:
        ValueError: if a precision is not positive.

    Example:
        >>> log10_precision_ratios([1e6, 10.0, 1.0])
        [6.0, 1.0, 0.0]
    """
    if any(not d > 0 for d in precisions):
        raise ValueError(f"log10_precision_ratios: precisions must be positive, got {precisions}")
    smallest = min(precisions)
    return [math.log10(d / smallest) for d in precisions]


@dataclass(frozen=True)
class PathStatistics:
    r"""Statistics of one prior group (a path of a layer).

    Attributes:
        layer: the layer's name.
        path: the path's name within the layer.
        prior_precision: :math:`\delta_g`.
        squared_norm: :math:`\lVert\theta_g\rVert^2`.
        numel: :math:`P_g`.
        effective_parameters: :math:`\gamma_g`.
        symmetry: what the path is exactly equivariant to (``LayerSymmetry.describe()``,
            e.g. ``"translations"``, ``"none"``); ``None`` if not known.
    """

    layer: str
    path: str
    prior_precision: float
    squared_norm: float
    numel: int
    effective_parameters: float
    symmetry: str | None = None

    @property
    def normalised(self) -> float:
        r""":math:`\gamma_g / P_g`."""
        return self.effective_parameters / self.numel


class EffectiveParameterReport:
    """Per-layer, per-path effective parameters with the App. D derived quantities.

    Besides App. D's columns, every row has ``count_only`` (:func:`count_only_shares`: the
    ``relative`` value the row would have with equal effective numbers in its layer) and
    ``log10_precision_ratio`` (:func:`log10_precision_ratios`): compare ``relative`` with
    ``count_only`` only where the ratios show that the precisions have separated.
    """

    columns = (
        "layer", "path", "prior_precision", "squared_norm", "numel", "effective_parameters",
        "normalised", "share", "relative", "effective_type", "count_only",
        "log10_precision_ratio", "symmetry",
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
            counts = count_only_shares([r.numel for r in paths])
            ratios = log10_precision_ratios([r.prior_precision for r in paths])
            for r, count_only, ratio in zip(paths, counts, ratios, strict=True):
                out.append(
                    {
                        **asdict(r),
                        "normalised": r.normalised,
                        "share": r.effective_parameters / total if total > 0 else float("nan"),
                        "relative": r.normalised / total_normalised
                        if total_normalised > 0
                        else float("nan"),
                        "effective_type": types[layer],
                        "count_only": count_only,
                        "log10_precision_ratio": ratio,
                    }
                )
        return out

    def effective_labels(self) -> dict[str, str]:
        """Layer -> its effective type and the symmetry it stands for: ``conv (translations)``."""
        symmetry = {(r.layer, r.path): r.symmetry for r in self.rows}
        return {
            layer: path_label(path, symmetry[layer, path])
            for layer, path in self.effective_types().items()
        }

    def to_table(self) -> str:
        """A text table (what ``bayesym report`` prints) with a legend of its columns.

        Columns are as wide as their longest entry, so no name is cut.
        """
        labels = self.effective_labels()
        cells = [
            (
                rec["layer"],
                rec["path"],
                rec["symmetry"] or "?",
                f"{rec['prior_precision']:.3g}",
                f"{rec['squared_norm']:.3g}",
                f"{rec['numel']:d}",
                f"{rec['effective_parameters']:.3g}",
                f"{rec['normalised']:.3f}",
                f"{rec['relative']:.3f}",
                f"{rec['count_only']:.3f}",
                f"{rec['log10_precision_ratio']:.2f}",
                labels[rec["layer"]],
            )
            for rec in self.records()
        ]
        widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(_HEADER)]
        left = {0, 1, 2, len(_HEADER) - 1}  # names left-aligned, numbers right-aligned

        def line(row: Sequence[str]) -> str:
            return " ".join(
                f"{c:<{w}}" if i in left else f"{c:>{w}}"
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()

        header = line(_HEADER)
        return "\n".join([header, "-" * len(header), *map(line, cells), *_LEGEND])

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


_HEADER = (
    "layer", "path", "symmetry", "precision", "|θ|²", "P", "γ", "γ/P", "relative",
    "count-only", "lg δ/δmin", "chosen",
)  # fmt: skip
"""Columns of :meth:`EffectiveParameterReport.to_table`."""

_LEGEND = (
    "layer: the module; path: one summand of a relaxed layer (a module without paths: its class);",
    "symmetry: what the path is exactly equivariant to (none: no symmetry);",
    "precision: the learned prior precision δ (large: the path's weights are pulled to zero);",
    "|θ|²: squared norm of the path's weights; P: its number of parameters;",
    "γ: effective number of parameters, how many of the P the data determine; γ/P: the fraction;",
    "relative: the path's γ/P over the sum of γ/P of its layer's paths;",
    "count-only: what relative would be with equal γ in the layer (set by the parameter counts);",
    "lg δ/δmin: log10 of the path's precision over the layer's smallest (> 2: switched off);",
    "chosen: the layer's path with the largest relative, with its symmetry (the effective type).",
    "A relative share near count-only with ratios near 0 is no choice.",
)
"""The legend printed under the table, one line per column group."""


def path_label(path: str, symmetry: str | None) -> str:
    """A path's name with the symmetry it stands for, e.g. ``conv (translations)``.

    Example:
        >>> path_label("gconv", "translations x C4"), path_label("ffc", "none")
        ('gconv (translations x C4)', 'ffc (no symmetry)')
    """
    if symmetry is None:
        return path
    return f"{path} ({'no symmetry' if symmetry == 'none' else symmetry})"


def group_symmetries(model: nn.Module, groups: Sequence[ParameterGroup]) -> dict[str, str]:
    """Group name -> what the group's path (or module) is exactly equivariant to.

    The path of a relaxed layer (:class:`~bayesym.layers.PathSum`) declares its own symmetry;
    a group of a module without paths (or of a whole layer) has the module's.

    Example:
        >>> from bayesym.layers import ffc_plus_conv
        >>> from bayesym.priors import GaussianPrior
        >>> model = nn.Sequential(ffc_plus_conv(1, 2, spatial=(4, 4)))
        >>> group_symmetries(model, GaussianPrior(model).groups)
        {'0.ffc': 'none', '0.conv': 'translations'}
    """
    modules = dict(model.named_modules())
    out = {}
    for group in groups:
        module = modules.get(group.layer)
        if module is None:
            continue
        key = group.path.split(".")[0]  # "<path>.omega" groups: the path's lengthscales
        if isinstance(module, PathSum) and key in module.paths:
            module = module.paths[key]
        out[group.name] = path_symmetry(module).describe()
    return out


def _rows(
    groups: Sequence[ParameterGroup],
    precisions: Mapping[str, float],
    norms: Mapping[str, float],
    gammas: Mapping[str, float],
    symmetries: Mapping[str, str] | None = None,
) -> list[PathStatistics]:
    symmetries = symmetries or {}
    return [
        PathStatistics(
            layer=g.layer or "model",
            path=g.path,
            prior_precision=float(precisions[g.name]),
            squared_norm=float(norms[g.name]),
            numel=g.numel,
            effective_parameters=float(gammas[g.name]),
            symmetry=symmetries.get(g.name),
        )
        for g in groups
    ]


def effective_parameter_report(
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
    gammas_ = {k: float(v) for k, v in gammas.items()}
    symmetries = group_symmetries(model, prior.groups)
    rows = _rows(prior.groups, prior.as_dict(), norms, gammas_, symmetries)
    return EffectiveParameterReport(rows)


def report_from_record(
    record: EpochRecord,
    groups: Sequence[ParameterGroup],
    symmetries: Mapping[str, str] | None = None,
) -> EffectiveParameterReport:
    """The report of one hyper step's record.

    ``symmetries`` (group name -> symmetry, :func:`group_symmetries`) fills the
    ``symmetry`` column.

    Raises:
        ValueError: if the record holds no hyper step.
    """
    if not record.is_hyper_step or record.effective_parameters is None:
        raise ValueError(f"epoch {record.epoch} has no hyper step (no effective parameters)")
    return EffectiveParameterReport(
        _rows(
            groups,
            record.precisions,
            record.squared_norms or {},
            record.effective_parameters,
            symmetries,
        )
    )


def report_from_history(
    history: Sequence[EpochRecord],
    groups: Sequence[ParameterGroup],
    symmetries: Mapping[str, str] | None = None,
) -> EffectiveParameterReport:
    """The report of the last hyper step recorded in a training history.

    ``symmetries``: as in :func:`report_from_record`.

    Raises:
        ValueError: if the history has no hyper step (a MAP run).
    """
    hyper = hyper_records(history)
    if not hyper:
        raise ValueError("the history has no hyper step (no effective parameters recorded)")
    return report_from_record(hyper[-1], groups, symmetries)
