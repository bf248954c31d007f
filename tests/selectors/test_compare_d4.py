"""The comparison harness on the 'd4' space: static baselines, EquiNAS_E and RPP side by side."""

import json

from selector_toys import record_data_loads

from bayesym.selectors.compare import CompareConfig, compare


def test_compare_runs_equinas_e_beside_the_static_baselines_and_rpp(monkeypatch, tmp_path):
    loads = record_data_loads(monkeypatch)
    config = CompareConfig(
        task="digits",
        space="d4",
        selectors=("static", "equinas-e", "rpp"),
        baselines=("C1", "D4"),
        train_size=48,
        val_size=24,
        test_size=40,
        budget_epochs=2.0,
        space_options={"width": 1, "depth": 2},
        selector_options={
            "static": {"training.batch_size": 24},
            "rpp": {"training.batch_size": 24},
            "equinas-e": {"population": 2, "fraction": 0.5, "optimizer.batch_size": 24},
        },
    )
    compare(config, tmp_path, progress=False)
    assert ("test", False) in loads and not any(inside for _, inside in loads)  # none in fit
    payload = json.loads((tmp_path / "compare.json").read_text())
    labels = {r["selector"] for r in payload["rows"]}
    assert labels == {"static", "static:C1", "static:D4", "equinas-e", "rpp"}
    row = next(r for r in payload["rows"] if r["selector"] == "equinas-e")
    assert row["image_passes"] <= 2 * 48
    assert list(row["choices"]) == ["blocks.0.conv", "blocks.1.conv"]
    assert (tmp_path / "seed0" / "equinas-e" / "lineage.png").is_file()
    assert (tmp_path / "compare.png").is_file()
