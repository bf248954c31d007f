"""The AEN reproduction's acceptance statements on synthetic cells whose answers are known."""

import sys
from argparse import Namespace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from reproduce_aen import BASELINES, SEARCH_TASKS, SINGLE_TASK, acceptance


def _metrics(accuracy):
    return {"accuracy": accuracy, "nll": 1.0}


def _cell(seed, aen_test, children):
    baselines = {n: {"valid": _metrics(0.5), "test": _metrics(0.5)} for n in BASELINES}
    baselines["hflip"] = {"valid": _metrics(0.7), "test": _metrics(0.6 + 0.01 * seed)}
    baselines["vflip"] = {"valid": _metrics(0.6), "test": _metrics(0.9)}  # best on test only
    history = [
        {"child": k, "epsilon": eps, "valid_accuracy": acc, "label": label, "reward": acc}
        for k, (eps, acc, label) in enumerate(children)
    ]
    return {"baselines": baselines, "aen": {"test": _metrics(aen_test), "history": history}}


def test_acceptance_statements_on_known_cells():
    children = [(1.0, 0.2, "none"), (1.0, 0.3, "htranslate"), (0.01, 0.8, "hflip+vflip"),
                (0.01, 0.7, "rot90")]  # fmt: skip
    cells = {}
    for seed in (0, 1, 2):
        for task in SEARCH_TASKS:
            cells[f"{task}/seed{seed}"] = _cell(seed, 0.62 + 0.001 * seed, children)
        single = _cell(seed, 0.0, children)["baselines"]
        single["rot90"] = {"valid": _metrics(0.9), "test": _metrics(0.95 - 0.01 * seed)}
        cells[f"{SINGLE_TASK}/seed{seed}"] = {"baselines": single}
    out = acceptance(Namespace(seeds=[0, 1, 2]), {"cells": cells})
    aug1 = out["Aug1"]
    # AEN beats the single picked on validation (hflip), not vflip, which only test favours.
    assert aug1["A1_vs_best_single"]["per_seed"] == pytest.approx([0.02, 0.011, 0.002])
    assert aug1["A1_vs_best_single"]["held"] and aug1["A1_vs_none"]["held"]
    assert abs(aug1["A2_last_minus_first_epsilon_bucket"]["mean"] - 0.5) < 1e-12
    assert aug1["A2_last_minus_first_epsilon_bucket"]["held"]
    assert not aug1["A3_top5_without_translation"]["held"]  # htranslate is in the top 5
    assert out["A4_IAug1"]["best"] == "rot90" and out["A4_IAug1"]["held"]
