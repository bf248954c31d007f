"""``torchrun --nproc-per-node 2 -m bayesym fit`` trains one model data-parallel (2 CPU ranks)."""

import json
import os
import subprocess
import sys

import pytest

from bayesym.cli import main

TINY = ["--task", "quadrant-digits", "--epochs", "2", "--width", "1", "--train-subset", "64",
        "--batch-size", "32", "--burn-in", "1", "--hyper-every", "1", "--hyper-steps", "3",
        "--ggn", "exact", "--quiet"]  # fmt: skip


@pytest.mark.slow
def test_torchrun_fit_equals_one_process_and_rank_zero_writes(tmp_path, capsys):
    assert main(["fit", *TINY, "--out", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "-m", "bayesym", "fit", *TINY, "--out", str(tmp_path / "two")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("test accuracy") == 1  # printed by rank 0 only
    one, two = (json.loads((tmp_path / k / "metrics.json").read_text()) for k in ("one", "two"))
    for key in ("test_nll", "valid_nll", "marglik"):
        assert two[key] == pytest.approx(one[key], rel=1e-4), key
    history = [json.loads((tmp_path / k / "history.json").read_text()) for k in ("one", "two")]
    for a, b in zip(*history, strict=True):
        assert b["precisions"] == pytest.approx(a["precisions"], rel=1e-4)
    assert {p.name for p in (tmp_path / "two").iterdir()} >= {"checkpoint.pt", "report.txt"}


def test_a_non_positive_dist_timeout_is_refused_before_any_work(tmp_path, capsys):
    assert main(["fit", *TINY, "--dist-timeout", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--dist-timeout must be positive, got 0.0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
