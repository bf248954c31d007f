"""bayesym fit / report / demo end to end, including kill-and-resume to the same result."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from bayesym.cli import main

TINY = ["--width", "1", "--train-subset", "96", "--batch-size", "32", "--burn-in", "1",
        "--hyper-every", "1", "--hyper-steps", "3", "--quiet"]  # fmt: skip


def test_fit_writes_a_complete_run_directory_and_report_reads_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(["fit", "--task", "quadrant-digits", "--epochs", "2", "--out", str(out), *TINY]) == 0
    )
    printed = capsys.readouterr().out
    assert "blocks.0.layer" in printed and "test accuracy" in printed
    for name in (
        "config.json",
        "groups.json",
        "checkpoint.pt",
        "history.json",
        "report.txt",
        "report.csv",
        "report.json",
        "plot.png",
        "metrics.json",
    ):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert set(report["effective_types"]) >= {f"blocks.{k}.layer" for k in range(8)}
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "relative" in printed and "count-only" in printed and "lg δ/δmin" in printed
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert {"count_only", "log10_precision_ratio"} <= set(rows[0])
    assert "count_only" in (out / "report.csv").read_text().splitlines()[0]


def test_map_fit_and_user_errors(tmp_path, capsys):
    out = tmp_path / "map"
    assert main(["fit", "--map", "--kind", "conv", "--epochs", "1", "--out", str(out), *TINY]) == 0
    assert main(["report", str(out)]) == 2
    assert "MAP run has no effective parameters" in capsys.readouterr().err
    assert main(["fit", "--kind", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "--kind: invalid choice: 'nope' (choose from 'fc', 'conv'" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    # same directory, other configuration: refused instead of silently mixing runs
    assert main(["fit", "--map", "--kind", "conv", "--epochs", "2", "--out", str(out), *TINY]) == 2
    assert "different configuration (differs in ['training.epochs'])" in capsys.readouterr().err


def test_a_run_written_before_a_new_field_existed_resumes(tmp_path, capsys):
    """config.json without a field that now exists (at its default) is the same configuration."""
    out = tmp_path / "old"
    args = ["fit", "--map", "--kind", "conv", "--epochs", "1", "--out", str(out), *TINY]
    assert main(args) == 0
    first = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    del config["training"]["marglik_batch_size"]  # older runs lack it
    (out / "config.json").write_text(json.dumps(config))
    assert main(args) == 0, capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["test_accuracy"] == first["test_accuracy"]
    config["model"]["width"] = 99  # a real difference is still refused, and named
    (out / "config.json").write_text(json.dumps(config))
    assert main(args) == 2
    assert "differs in ['model.width']" in capsys.readouterr().err


LEGACY_FLAT_CONFIG = {
    "task": "quadrant-digits", "layer_kind": "ffc+conv", "width": 1, "layer_options": {},
    "method": "marglik", "epochs": 3, "batch_size": 32, "lr": 0.001, "burn_in": 1,
    "hyper_every": 1, "hyper_steps": 3, "ggn": "mc", "approx": "expand", "marglik_subset": None,
    "marglik_batch_size": None, "train_subset": 96, "seed": 0, "data_root": None,
}  # fmt: skip
"""config.json as versions before the nested RunConfig wrote it (for the options of TINY)."""


def test_a_run_directory_of_the_flat_config_era_resumes_to_the_same_result(tmp_path):
    """Old flat config.json, a checkpoint whose trainer config holds `progress` and whose
    history rows say `weight_norms`: resumed, it ends where an uninterrupted run ends."""
    fresh, old = tmp_path / "fresh", tmp_path / "old"
    assert main(["fit", "--epochs", "3", "--out", str(fresh), *TINY]) == 0
    assert main(["fit", "--epochs", "3", "--out", str(old), *TINY]) == 0
    checkpoint = torch.load(old / "checkpoint.pt", weights_only=False)
    # rewind to epoch 2 of the old format: history rows as dicts with the old key name
    state = torch.load(fresh / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == 3
    legacy_rows = []
    for row in checkpoint["history"]:
        row = dict(row)
        row["weight_norms"] = row.pop("squared_norms")
        legacy_rows.append(row)
    checkpoint["history"] = legacy_rows
    checkpoint["config"] = {**checkpoint["config"], "progress": False}
    torch.save(checkpoint, old / "checkpoint.pt")
    (old / "config.json").write_text(json.dumps(LEGACY_FLAT_CONFIG))
    (old / "history.json").write_text(json.dumps(legacy_rows))
    assert main(["report", str(old)]) == 0  # the old history reads
    assert main(["fit", "--epochs", "3", "--out", str(old), *TINY]) == 0
    assert (
        json.loads((old / "metrics.json").read_text())["test_nll"]
        == json.loads((fresh / "metrics.json").read_text())["test_nll"]
    )
    assert main(["fit", "--epochs", "4", "--out", str(old), *TINY]) == 2  # still checked


def test_demo_prints_layer_choices_and_both_accuracies(tmp_path, capsys):
    assert main(["demo", "--epochs", "1", "--out", str(tmp_path), *TINY]) == 0
    out = capsys.readouterr().out
    assert "invariant task" in out and "position task" in out
    assert "test accuracy: invariant task (10 classes)" in out


def test_threads_option_sets_torch_threads_and_rejects_zero(tmp_path, capsys):
    before = torch.get_num_threads()
    try:
        out = tmp_path / "t"
        args = ["fit", "--map", "--kind", "conv", "--epochs", "1", "--threads", "1"]
        assert main([*args, "--out", str(out), *TINY]) == 0
        assert torch.get_num_threads() == 1
        assert main(["fit", "--threads", "0", "--out", str(tmp_path / "z"), *TINY]) == 2
        assert "--threads must be >= 1" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


def _fit_command(out, epochs):
    return [sys.executable, "-m", "bayesym.cli", "fit", "--task", "quadrant-position-digits",
            "--epochs", str(epochs), "--out", str(out), *TINY]  # fmt: skip


def test_killed_fit_resumes_to_the_same_final_metrics(tmp_path):
    epochs = 8
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "reference"
    subprocess.run(_fit_command(reference, epochs), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _fit_command(killed, epochs), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    history = killed / "history.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if history.is_file() and len(json.loads(history.read_text() or "[]")) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "metrics.json").exists(), "the run finished before it was killed"
    subprocess.run(_fit_command(killed, epochs), check=True, env=env, capture_output=True)

    ref = json.loads((reference / "metrics.json").read_text())
    got = json.loads((killed / "metrics.json").read_text())
    for key in ("test_accuracy", "test_nll", "valid_accuracy", "valid_nll", "marglik"):
        assert got[key] == ref[key], key
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(json.loads((killed / "history.json").read_text())) == strip(
        json.loads((reference / "history.json").read_text())
    )


@pytest.mark.slow
def test_fit_on_real_fashion_mnist_learns_and_reports(tmp_path, capsys):
    """End to end on the real data: a short marglik fit of F-FC + CONV (about a minute)."""
    from bayesym.data import DatasetNotFoundError, fashion_mnist_dir

    try:
        fashion_mnist_dir()
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST is not installed (apt-get install -y dataset-fashion-mnist)")
    out = tmp_path / "fmnist"
    args = ["fit", "--task", "fmnist", "--kind", "ffc+conv", "--width", "2",
            "--train-subset", "1000", "--epochs", "3", "--burn-in", "1", "--hyper-every", "1",
            "--hyper-steps", "5", "--quiet", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.3  # 10 classes: clearly above chance after 3 epochs
    table = capsys.readouterr().out
    assert "ffc" in table and "blocks.7.layer" in table
    assert (out / "plot.png").is_file()
