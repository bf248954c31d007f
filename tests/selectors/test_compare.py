"""The comparison harness: test data kept from selectors, resume, outputs, refusals."""

import csv
import dataclasses
import json
from typing import ClassVar

import pytest
import torch
from selector_toys import digits, record_data_loads, without_time

import bayesym.selectors.compare as compare_module
from bayesym.data import ImageDataset
from bayesym.marglik import MarglikTrainer
from bayesym.selectors import (
    SELECTORS,
    Budget,
    Cost,
    DataShape,
    SelectionResult,
    Selector,
    StaticConfig,
    StaticSelector,
    make_space,
)
from bayesym.selectors.compare import CompareConfig, compare

SMALL = {
    "task": "digits",
    "space": "translation",
    "train_size": 48,
    "val_size": 24,
    "test_size": 40,
    "budget_epochs": 2.0,
    "space_options": {"width": 1},
    "selector_options": {},
}
FAST = {"training.batch_size": 24}


def _config(**changes):
    changes.setdefault("selectors", ("static", "marglik", "rpp"))
    options = {s: FAST for s in changes["selectors"] if s in ("static", "marglik", "rpp")}
    return CompareConfig(**{**SMALL, "selector_options": options, **changes})


class SpySelector(Selector, name="spy", spaces={"translation"}, config=StaticConfig):
    """Records everything its search receives; returns an untrained CONV network."""

    received: ClassVar[list] = []

    def search(self, selection):
        SpySelector.received.append(selection)
        model = selection.space.build_baseline("conv", DataShape.of(selection.train))
        return SelectionResult(
            selector=self.name,
            space=selection.space.name,
            config=self.config_json(),
            choices=selection.space.describe(model),
            parameters=1,
            effective_parameters=None,
            valid={"accuracy": 0.0, "nll": 1.0},
            cost=Cost(0.0, 0, 0, 1, 0.0),
            model=model,
        )


def _rows_of(images):
    return {bytes(row.numpy().tobytes()) for row in images.flatten(1)}


def test_no_selector_can_reach_the_test_split(monkeypatch, tmp_path):
    """A spy sees exactly train and valid; no selector loads data inside fit."""
    monkeypatch.setitem(SELECTORS, "spy", SpySelector)
    SpySelector.received.clear()
    loads = record_data_loads(monkeypatch)
    scored = []
    evaluate = compare_module.evaluate_model
    monkeypatch.setattr(
        compare_module,
        "evaluate_model",
        lambda model, data, *a, **k: scored.append(data.name) or evaluate(model, data, *a, **k),
    )
    config = _config(selectors=("spy", "static", "marglik", "rpp"), baselines=("conv",))
    compare(config, tmp_path, progress=False)
    assert ("test", False) in loads and not any(inside for _, inside in loads)
    assert scored == ["digits/test"] * len(config.cells())  # once per cell, after fit

    (selection,) = SpySelector.received
    train, valid = selection.train, selection.valid
    assert isinstance(train, ImageDataset) and isinstance(valid, ImageDataset)
    fields = {f.name for f in dataclasses.fields(selection)}
    assert fields == {
        "train", "valid", "space", "meter", "device", "progress", "executor", "run_dir",
        "identity", "folder",
    }  # fmt: skip
    for value in vars(selection).values():
        assert not hasattr(value, "test")
    test = digits(train_size=48, val_size=24).test
    assert train.name == "digits/train" and valid.name == "digits/valid"
    assert not (_rows_of(train.images) | _rows_of(valid.images)) & _rows_of(test.images)


def _markdown_without_wall_seconds(path):
    """``compare.md`` with the wall-seconds column (the 8th of the table) removed."""
    lines = []
    for line in path.read_text().splitlines():
        cells = line.split(" | ")
        if line.startswith("| ") and len(cells) == 9:
            del cells[7]
        lines.append(" | ".join(cells))
    return lines


def _without_time_rows(path):
    with open(path) as fh:
        return [{k: v for k, v in r.items() if k != "wall_seconds"} for r in csv.DictReader(fh)]


def test_a_killed_comparison_restarts_to_the_same_tables(monkeypatch, tmp_path):
    config = _config(seeds=(0,), baselines=("conv", "fc"))
    compare(config, tmp_path / "whole", progress=False)

    class Killed(Exception):
        pass

    original = MarglikTrainer._map_epoch
    calls = [0]

    def killing(self, *args):
        calls[0] += 1
        if calls[0] == 7:  # seed 0: conv 2 epochs, fc 2, marglik 1 (+ hyper step), rpp's 2nd
            raise Killed
        return original(self, *args)

    with monkeypatch.context() as patch:
        patch.setattr(MarglikTrainer, "_map_epoch", killing)
        with pytest.raises(Killed):
            compare(config, tmp_path / "killed", progress=False)
    assert (tmp_path / "killed/seed0/static-fc/test.json").is_file()
    assert (tmp_path / "killed/seed0/rpp/trainer/checkpoint.pt").is_file()
    assert not (tmp_path / "killed/seed0/rpp/test.json").exists()
    lines = []
    compare(config, tmp_path / "killed", progress=True, log=lines.append)
    assert sum("finished earlier, skipped" in line for line in lines) == 3
    for name in ("compare.json",):
        whole = json.loads((tmp_path / "whole" / name).read_text())
        resumed = json.loads((tmp_path / "killed" / name).read_text())
        for key in ("rows", "summary", "differences"):
            assert without_time(resumed[key]) == without_time(whole[key])
    assert _without_time_rows(tmp_path / "killed/compare.csv") == _without_time_rows(
        tmp_path / "whole/compare.csv"
    )
    killed_md = _markdown_without_wall_seconds(tmp_path / "killed/compare.md")
    assert killed_md == _markdown_without_wall_seconds(tmp_path / "whole/compare.md")
    assert any("wall s" in line for line in (tmp_path / "whole/compare.md").read_text().split("\n"))


def test_outputs_tables_figure_and_the_static_row(tmp_path):
    config = _config(seeds=(0, 1), selectors=("static", "rpp"), baselines=("conv", "fc"))
    compare(config, tmp_path, progress=False)
    payload = json.loads((tmp_path / "compare.json").read_text())
    labels = [s["selector"] for s in payload["summary"]]
    assert labels == ["rpp", "static", "static:conv", "static:fc"]
    assert {"torch", "torch_threads", "device", "git_commit"} <= set(payload["environment"])
    table = (tmp_path / "compare.md").read_text()
    assert "| selector | val acc | test acc ± SE | test NLL | parameters | candidates" in table
    assert "static:conv" in table and "paired over seeds" in table
    assert (tmp_path / "compare.png").stat().st_size > 10_000
    static = [r for r in payload["rows"] if r["selector"] == "static"]
    baseline_rows = [r for r in payload["rows"] if r["selector"].startswith("static:")]
    for row in static:
        same_seed = [r for r in baseline_rows if r["seed"] == row["seed"]]
        assert row["image_passes"] == sum(r["image_passes"] for r in same_seed)
        assert row["candidates"] == 2
        picked = next(r for r in same_seed if r["selector"] == f"static:{row['picked']}")
        assert row["test_accuracy"] == picked["test_accuracy"]
        assert row["valid_accuracy"] == max(r["valid_accuracy"] for r in same_seed)
    # the static row is what the static selector returns on the baselines with 2x the budget
    split = compare_module._split(config, 0)
    training = compare_module.selector_config(StaticSelector, FAST, seed=0).training
    direct = StaticSelector(StaticConfig(("conv", "fc"), training=training, seed=0)).fit(
        split.train,
        split.valid,
        space=make_space("translation", width=1),
        budget=Budget(epochs=2 * config.budget_epochs),
        progress=False,
    )
    assert direct.valid["accuracy"] == static[0]["valid_accuracy"]
    assert direct.choices[0].choice == static[0]["picked"]


def test_a_finished_comparison_is_not_recomputed_and_other_settings_are_refused(tmp_path):
    config = _config(selectors=("rpp",))
    compare(config, tmp_path, progress=False)
    before = (tmp_path / "seed0/rpp/test.json").stat().st_mtime_ns
    lines = []
    compare(config, tmp_path, log=lines.append)
    assert (tmp_path / "seed0/rpp/test.json").stat().st_mtime_ns == before
    assert lines == ["[1/1] seed 0 rpp: finished earlier, skipped"]
    with pytest.raises(ValueError, match=r"other settings \(differs in \['budget_epochs'\]"):
        compare(_config(selectors=("rpp",), budget_epochs=3.0), tmp_path, progress=False)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"task": "nope"}, r"unknown task 'nope'; valid: digits, "),
        ({"space": "nope"}, r"unknown space 'nope'; valid: translation"),
        ({"selectors": ("nope",)}, r"unknown selector 'nope'; valid: static, marglik, rpp"),
        ({"baselines": ("D4",)}, r"unknown baseline 'D4' of the 'translation' space; valid: conv"),
        ({"train_size": 0}, r"train_size must be a positive int"),
        ({"seeds": ()}, r"seeds must be distinct ints"),
        ({"budget_epochs": 0.0}, r"budget_epochs must be positive"),
        ({"space_options": {"depth": 3}}, r"has no option\(s\) \['depth'\]; options: "),
        ({"selector_options": {"rpp": {"nope": 1}}}, r"unknown setting 'nope'; settings here: "),
    ],
)
def test_bad_configurations_are_refused_listing_the_valid_choices(changes, message):
    with pytest.raises(ValueError, match=message):
        CompareConfig(**{**SMALL, "selectors": ("rpp",), **changes})


def test_a_space_a_selector_does_not_support_is_refused(monkeypatch):
    class D4Only(SpySelector, name="d4-only", spaces={"d4"}):
        pass

    monkeypatch.setitem(SELECTORS, "d4-only", D4Only)
    with pytest.raises(ValueError, match="'d4-only' does not support the 'translation' space; it"):
        CompareConfig(**{**SMALL, "selectors": ("d4-only",)})


def test_the_cli_refuses_bad_options_in_one_line_before_any_work(tmp_path, capsys):
    from bayesym.cli import main

    out = tmp_path / "out"
    base = ["compare", "--task", "digits", "--space", "translation", "--out", str(out)]
    cases = [
        (["--selectors", "static", "--task", "nope"], "unknown task 'nope'; valid: digits"),
        (["--selectors", "static", "--space", "nope"], "unknown space 'nope'; valid: translation"),
        (["--selectors", "static,nope"], "unknown selector 'nope'; valid: static, marglik, rpp"),
        (["--selectors", "static", "--baselines", "C4"], "unknown baseline 'C4' of the"),
        (["--selectors", "rpp", "--train-size", "0"], "--train-size must be a positive int"),
        (["--selectors", "rpp", "--seeds", "0,x"], "--seeds must be comma-separated"),
        (["--selectors", "rpp", "--budget-epochs", "-2"], "--budget-epochs: must be a positive"),
        (["--selectors", "rpp", "--threads", "0"], "--threads must be >= 1"),
        (["--selectors", "rpp", "--train-size", "5000"], "exceeds the 1400 images"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err, err
    assert not out.exists()


def test_the_cli_runs_a_comparison(tmp_path, capsys):
    from bayesym.cli import main

    argv = [
        "compare", "--task", "digits", "--space", "translation", "--selectors", "rpp",
        "--baselines", "conv", "--seeds", "0", "--budget-epochs", "1", "--train-size", "32",
        "--val-size", "16", "--test-size", "16", "--width", "1", "--out", str(tmp_path),
        "--quiet", "--threads", "1",
    ]  # fmt: skip
    threads = torch.get_num_threads()
    try:
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert "| rpp |" in printed and "| static:conv |" in printed
    for name in ("compare.md", "compare.csv", "compare.json", "compare.png"):
        assert (tmp_path / name).is_file()
