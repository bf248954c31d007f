"""The Table 3 reproduction's analysis on synthetic cells whose answers are known."""

import math
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from reproduce_multigroup import block_statistics, markdown, summarise

NUMEL = {"ffc": 4096, "conv": 1152, "pgconv": 76}


def _layers(gconv_precisions, gconv_relative):
    return [
        {
            "layer": f"blocks.{k}.layer",
            "paths": {
                "ffc": {"prior_precision": 50.0, "numel": NUMEL["ffc"], "relative": 0.02},
                "conv": {"prior_precision": 1.0, "numel": NUMEL["conv"], "relative": 0.98 - r},
                "pgconv": {"prior_precision": d, "numel": NUMEL["pgconv"], "relative": r},
            },
        }
        for k, (d, r) in enumerate(zip(gconv_precisions, gconv_relative, strict=True))
    ]


def _cell(dataset, seed, gconv_precisions, share, train_accuracy=0.9):
    return {
        "task": dataset,
        "variant": "paper",
        "method": "marglik",
        "seed": seed,
        "train_accuracy": train_accuracy,
        "test_accuracy": 0.8,
        "layers": _layers(gconv_precisions, [share] * len(gconv_precisions)),
    }


def test_block_statistics_count_only_ratios_and_switched_off_paths():
    stats = block_statistics(_layers([1e3, 2.0], [0.5, 0.6]), "pgconv")
    inverse = {p: 1 / n for p, n in NUMEL.items()}
    total = sum(inverse.values())
    assert stats[0]["count_only"]["pgconv"] == pytest.approx(inverse["pgconv"] / total)
    assert stats[0]["log10_ratio"] == pytest.approx(
        {"ffc": math.log10(50), "conv": 0.0, "pgconv": 3.0}
    )
    assert stats[0]["gconv_over_conv"] == pytest.approx(3.0)
    assert stats[0]["off"] == ["pgconv"] and stats[1]["off"] == []
    assert stats[0]["gconv_off"] and not stats[1]["gconv_off"]
    # off against the block's smallest (the F-FC path) but not against CONV: not "GCONV off"
    ffc_preferred = _layers([60.0], [0.1])
    ffc_preferred[0]["paths"]["ffc"]["prior_precision"] = 0.1
    (stats,) = block_statistics(ffc_preferred, "pgconv")
    assert "pgconv" in stats["off"] and not stats["gconv_off"]


def test_summary_finds_the_block_plain_switches_off_and_the_share_shift_with_its_error():
    off, on = [1.0] * 7 + [1e4], [1.0] * 8
    cells = [
        _cell("plain", 0, off, 0.50),
        _cell("plain", 1, off, 0.52),
        _cell("plain", 2, on, 0.54),
        _cell("plain", 3, off, 0.5, train_accuracy=0.1),  # collapsed: reported, not averaged
        _cell("rot90", 0, on, 0.70),
        _cell("rot90", 1, on, 0.74),
        _cell("rot90", 2, off, 0.72),
    ]
    summary = summarise(cells)
    plain = summary["rows"]["paper/plain"]
    assert plain["seeds"] == [0, 1, 2] and plain["collapsed_seeds"] == [3]
    assert plain["gconv_off"] == [0] * 7 + [2]
    check = summary["checks"]["paper"]["plain_switches_gconv_off_where_rot90_keeps_it"]
    assert check["holds"] and check["blocks"] == [8]
    shift = summary["checks"]["paper"]["share_rises_rot90"]
    se = math.sqrt(
        statistics.variance([0.5, 0.52, 0.54]) / 3 + statistics.variance([0.7, 0.74, 0.72]) / 3
    )
    assert shift["shift"] == pytest.approx(0.20) and shift["standard_error"] == pytest.approx(se)
    assert shift["holds"]
    table = markdown(summary)
    assert "| paper | plain | [0, 1, 2] ([3]) |" in table and "b8: 2" in table


def test_a_shift_within_two_standard_errors_does_not_hold():
    cells = [_cell("plain", s, [1.0] * 8, x) for s, x in enumerate([0.5, 0.7, 0.6])]
    cells += [_cell("rot90", s, [1.0] * 8, x) for s, x in enumerate([0.55, 0.75, 0.62])]
    shift = summarise(cells)["checks"]["paper"]["share_rises_rot90"]
    assert 0 < shift["shift"] < 2 * shift["standard_error"] and not shift["holds"]
