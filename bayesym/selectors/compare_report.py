r"""The outputs of a comparison: one row per (selector, seed), summaries over seeds, a figure.

Written into the comparison's directory by :func:`write_outputs`:

* ``compare.json``: the configuration, the environment (torch version, threads, device, git
  commit), every row, the summary per selector and the paired differences;
* ``compare.csv``: one line per (selector, seed);
* ``compare.md``: the summary table — selector, validation accuracy, test accuracy
  :math:`\pm` its standard error over seeds, test NLL, parameters, candidates trained,
  training image passes (in epochs of the training split), wall seconds and the per-layer
  choices — and the paired differences;
* ``compare.png``: test accuracy (mean :math:`\pm` standard error) against training image
  passes, and a selectors :math:`\times` layers map of the choices.

The standard error over :math:`S` seeds is :math:`s/\sqrt S` with the sample standard
deviation :math:`s` (undefined for one seed). Differences are paired over seeds, since every
selector of a seed sees the same split: :math:`d_s = a_s - b_s`, reported as
:math:`\bar d \pm \mathrm{SE}(d)` and called a difference only when
:math:`|\bar d| > 2\,\mathrm{SE}(d)`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import statistics
import subprocess
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bayesym.selectors.budget import Cost
from bayesym.selectors.jsonable import jsonable
from bayesym.selectors.static import best_on_validation

if TYPE_CHECKING:  # pragma: no cover
    from bayesym.selectors.compare import CellResult, CompareConfig

__all__ = [
    "environment",
    "paired_difference",
    "rows",
    "summarise",
    "write_outputs",
]

TIME_COLUMNS = ("wall_seconds",)
"""Columns that differ between an interrupted and an uninterrupted comparison."""


def environment(device: str) -> dict[str, Any]:
    """What the comparison ran on (versions, threads, device, git commit if available)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except OSError:
        commit = ""
    from bayesym import __version__

    return {
        "bayesym": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "cpu_count": os.cpu_count(),
        "git_commit": commit or None,
    }


def _row(label: str, seed: int, result: CellResult, cost: Cost, picked: str | None) -> dict:
    selection = result.selection
    return {
        "selector": label,
        "seed": seed,
        "valid_accuracy": selection.valid["accuracy"],
        "valid_nll": selection.valid["nll"],
        "test_accuracy": result.test["accuracy"],
        "test_nll": result.test["nll"],
        "parameters": selection.parameters,
        "candidates": cost.candidates_trained,
        "image_passes": cost.image_passes,
        "epochs": cost.image_passes / result.train_size,
        "wall_seconds": cost.wall_seconds,
        "picked": picked,
        "choices": {c.layer: c.choice for c in selection.choices},
    }


def _static_row(seed: int, baselines: Sequence[CellResult]) -> dict:
    """The static selector's row: the baseline cell with the best validation accuracy."""
    best = baselines[best_on_validation([b.selection.valid for b in baselines])]
    costs = [b.selection.cost for b in baselines]
    total = Cost(
        wall_seconds=sum(c.wall_seconds for c in costs),
        image_passes=sum(c.image_passes for c in costs),
        eval_passes=sum(c.eval_passes for c in costs),
        candidates_trained=sum(c.candidates_trained for c in costs),
        final_model_epochs=best.selection.cost.final_model_epochs,
    )
    return _row("static", seed, best, total, picked=best.cell.baseline)


def rows(config: CompareConfig, results: Sequence[CellResult]) -> list[dict]:
    """One row per (label, seed) in the order of :meth:`CompareConfig.labels`."""
    by_seed: dict[int, list[CellResult]] = {}
    for result in results:
        by_seed.setdefault(result.seed, []).append(result)
    out: dict[str, list[dict]] = {label: [] for label in config.labels()}
    for seed in config.seeds:
        cells = by_seed.get(seed, [])
        for result in cells:
            label = result.cell.label
            out[label].append(_row(label, seed, result, result.selection.cost, None))
        baselines = [r for r in cells if r.cell.baseline is not None]
        if "static" in config.selectors and baselines:
            out["static"].append(_static_row(seed, baselines))
    return [row for label in out for row in out[label]]


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return mean, se


def _modal_choices(label_rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Per layer the most frequent choice over seeds (``a/b`` when seeds tie)."""
    layers = list(label_rows[0]["choices"])
    out = {}
    for layer in layers:
        counts = Counter(r["choices"].get(layer, "?") for r in label_rows).most_common()
        top = [c for c, n in counts if n == counts[0][1]]
        out[layer] = "/".join(sorted(top))
    return out


def summarise(table: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Mean and standard error over seeds per label (first-appearance order)."""
    labels = list(dict.fromkeys(r["selector"] for r in table))
    out = []
    for label in labels:
        group = [r for r in table if r["selector"] == label]
        entry: dict[str, Any] = {"selector": label, "seeds": len(group)}
        for key in ("valid_accuracy", "test_accuracy", "test_nll"):
            entry[key], entry[f"{key}_se"] = _mean_se([r[key] for r in group])
        for key in ("parameters", "candidates", "image_passes", "epochs", "wall_seconds"):
            entry[key] = statistics.fmean(r[key] for r in group)
        entry["choices"] = _modal_choices(group)
        picked = [r["picked"] for r in group if r["picked"]]
        entry["picked"] = dict(Counter(picked)) if picked else None
        out.append(entry)
    return out


def paired_difference(
    table: Sequence[Mapping[str, Any]], label: str, reference: str, key: str = "test_accuracy"
) -> dict[str, Any]:
    """Mean and SE over seeds of ``key(label) - key(reference)``, and the verdict."""
    a = {r["seed"]: r[key] for r in table if r["selector"] == label}
    b = {r["seed"]: r[key] for r in table if r["selector"] == reference}
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return {"selector": label, "reference": reference, "seeds": 0}
    mean, se = _mean_se([a[s] - b[s] for s in seeds])
    if math.isnan(se):
        verdict = "one seed: no claim"
    elif abs(mean) > 2 * se:
        verdict = "higher" if mean > 0 else "lower"
    else:
        verdict = "within 2 SE"
    return {
        "selector": label,
        "reference": reference,
        "seeds": len(seeds),
        "difference": mean,
        "se": se,
        "verdict": verdict,
    }


def _reference(summary: Sequence[Mapping[str, Any]]) -> str | None:
    """The reference of the differences: ``static`` if present, else the best baseline."""
    labels = [s["selector"] for s in summary]
    if "static" in labels:
        return "static"
    baselines = [s for s in summary if s["selector"].startswith("static:")]
    if not baselines:
        return None
    return max(baselines, key=lambda s: s["valid_accuracy"])["selector"]


def _fmt(mean: float, se: float | None = None, digits: int = 4) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if se is None or math.isnan(se):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def _choices_text(choices: Mapping[str, str]) -> str:
    """``conv×6 ffc×2``-style run-length text of the per-layer choices, in layer order."""
    parts: list[list[Any]] = []
    for choice in choices.values():
        if parts and parts[-1][0] == choice:
            parts[-1][1] += 1
        else:
            parts.append([choice, 1])
    return " ".join(c if n == 1 else f"{c}×{n}" for c, n in parts)


def markdown(config: CompareConfig, summary: Sequence[Mapping[str, Any]], differences: list) -> str:
    """The summary table and the paired differences as markdown."""
    budget = "own schedules" if config.budget_epochs is None else f"{config.budget_epochs:g} epochs"
    lines = [
        f"# Selectors on `{config.task}`, space `{config.space}`",
        "",
        f"{len(config.seeds)} seed(s) {list(config.seeds)}; {config.train_size} training and "
        f"{config.val_size} validation images from the training file; budget {budget} per "
        "cell; test accuracy ± standard error over seeds; the test split is scored once per "
        "cell, after selection.",
        "",
        "| selector | val acc | test acc ± SE | test NLL | parameters | candidates "
        "| image passes (epochs) | wall s | choices per layer |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        picked = ""
        if s["picked"]:
            picked = " (picked: " + ", ".join(f"{k}×{v}" for k, v in s["picked"].items()) + ")"
        lines.append(
            f"| {s['selector']} | {_fmt(s['valid_accuracy'])} "
            f"| {_fmt(s['test_accuracy'], s['test_accuracy_se'])} | {_fmt(s['test_nll'], None, 3)} "
            f"| {s['parameters']:,.0f} | {s['candidates']:g} "
            f"| {s['image_passes']:,.0f} ({s['epochs']:.2f}) | {s['wall_seconds']:.1f} "
            f"| {_choices_text(s['choices'])}{picked} |"
        )
    if differences:
        reference = differences[0]["reference"]
        lines += [
            "",
            f"Test accuracy against `{reference}`, paired over seeds (called a difference only "
            "beyond 2 SE):",
            "",
            "| selector | difference ± SE | verdict |",
            "|---|---|---|",
        ]
        for d in differences:
            if d["seeds"]:
                lines.append(
                    f"| {d['selector']} | {_fmt(d['difference'], d['se'])} | {d['verdict']} |"
                )
    return "\n".join(lines) + "\n"


def write_outputs(
    config: CompareConfig, results: Sequence[CellResult], out_dir: Path, *, device: str
) -> dict[str, Any]:
    """Write ``compare.json``, ``compare.csv``, ``compare.md`` and ``compare.png``."""
    table = rows(config, results)
    summary = summarise(table)
    reference = _reference(summary)
    differences = (
        []
        if reference is None
        else [
            paired_difference(table, s["selector"], reference)
            for s in summary
            if s["selector"] != reference
        ]
    )
    payload = {
        "config": config.to_json(),
        "environment": environment(device),
        "rows": table,
        "summary": summary,
        "differences": differences,
    }
    tmp = out_dir / "compare.json.tmp"
    tmp.write_text(json.dumps(jsonable(payload), indent=1))
    os.replace(tmp, out_dir / "compare.json")
    _write_csv(table, out_dir / "compare.csv")
    (out_dir / "compare.md").write_text(markdown(config, summary, differences))
    from bayesym.selectors.compare_figure import plot_comparison

    plot_comparison(config, summary, out_dir / "compare.png")
    return payload


def _write_csv(table: Sequence[Mapping[str, Any]], path: Path) -> None:
    columns = [k for k in table[0] if k != "choices"] + ["choices"] if table else []
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in table:
            writer.writerow({**row, "choices": " ".join(row["choices"].values())})
