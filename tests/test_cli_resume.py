"""Resuming `bayesym fit`: only what changes the result blocks it; an unreadable checkpoint
falls back to the previous one; the resume says where it starts."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bayesym.cli import main
from bayesym.marglik.checkpoint import (
    TRAINER_KEYS,
    CheckpointError,
    checkpoint_epoch,
    load_checkpoint,
    previous_checkpoint_path,
    save_checkpoint,
)

ROOT = Path(__file__).resolve().parents[1]

TINY = ["--width", "1", "--train-subset", "32", "--batch-size", "32", "--epochs", "2",
        "--burn-in", "1", "--hyper-every", "1", "--hyper-steps", "1", "--quiet"]  # fmt: skip


def _final(out: Path) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    return {k: metrics[k] for k in ("test_nll", "test_accuracy", "valid_nll", "marglik")}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished 2-epoch run (its checkpoint and the previous one, of epochs 2 and 1)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["fit", "--out", str(out), *TINY]) == 0
    return out


def _copy(finished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


def test_session_options_never_block_a_resume_and_the_resume_says_its_epoch(
    finished, tmp_path, capsys
):
    """--quiet, --device and --root are not part of the result (nor --threads: not saved)."""
    out = _copy(finished, tmp_path)
    capsys.readouterr()
    loud = [a for a in TINY if a != "--quiet"]
    assert main(["fit", "--out", str(out), *loud, "--device", "cpu"]) == 0
    assert f"resuming from epoch 2 of 2 ({out})" in capsys.readouterr().err
    assert main(["fit", "--out", str(out), *TINY, "--root", str(tmp_path)]) == 0
    assert _final(out) == _final(finished)
    saved = (out / "config.json").read_text()
    assert all(word not in saved for word in ("quiet", "threads", "device"))
    # a setting that changes the result still blocks, by name
    assert main(["fit", "--out", str(out), *TINY, "--seed", "1"]) == 2
    assert "differs in ['training.seed']" in capsys.readouterr().err


def test_a_resume_with_other_session_options_reaches_the_same_result(finished, tmp_path, capsys):
    """Stopped after epoch 1 (the previous checkpoint made the newest), resumed loud."""
    out = _copy(finished, tmp_path)
    os.replace(previous_checkpoint_path(out / "checkpoint.pt"), out / "checkpoint.pt")
    for name in ("metrics.json", "report.txt"):
        (out / name).unlink()
    capsys.readouterr()
    assert main(["fit", "--out", str(out), *[a for a in TINY if a != "--quiet"]]) == 0
    assert "resuming from epoch 1 of 2" in capsys.readouterr().err
    assert _final(out) == _final(finished)


def test_an_unreadable_checkpoint_falls_back_to_the_previous_one_and_says_so(
    finished, tmp_path, capsys
):
    out = _copy(finished, tmp_path)
    checkpoint = out / "checkpoint.pt"
    assert checkpoint_epoch(checkpoint) == 2
    assert torch.load(previous_checkpoint_path(checkpoint), weights_only=False)["epoch"] == 1
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])  # truncated
    capsys.readouterr()
    assert main(["fit", "--out", str(out), *TINY]) == 0
    err = capsys.readouterr().err
    assert "resuming from epoch 1 of 2" in err
    assert (
        f"bayesym: warning: the checkpoint {checkpoint} is unreadable (" in err
        and "resuming from the previous checkpoint checkpoint.prev.pt (epoch 1)" in err
    )
    assert _final(out) == _final(finished)  # epoch 2 redone: the same result


def test_a_deleted_checkpoint_falls_back_to_the_previous_one(finished, tmp_path, capsys):
    out = _copy(finished, tmp_path)
    (out / "checkpoint.pt").unlink()
    capsys.readouterr()
    assert main(["fit", "--out", str(out), *TINY]) == 0
    err = capsys.readouterr().err
    assert "resuming from epoch 1 of 2" in err
    assert "is missing; resuming from the previous checkpoint checkpoint.prev.pt (epoch 1)" in err
    assert _final(out) == _final(finished)


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_no_readable_checkpoint_is_one_line_naming_the_files_and_the_fix(tmp_path, capsys, damage):
    out = tmp_path / "run"
    assert main(["fit", "--out", str(out), *TINY]) == 0
    for path in (out / "checkpoint.pt", out / "checkpoint.prev.pt"):
        data = path.read_bytes()
        path.write_bytes({"empty": b"", "truncated": data[:100], "garbage": b"\x00" * 999}[damage])
    capsys.readouterr()
    assert main(["fit", "--out", str(out), *TINY]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"bayesym: error: cannot read the checkpoint {out / 'checkpoint.pt'}"
    )
    assert "nor the previous one" in lines[0] and "delete them to start the run over" in lines[0]


def test_save_checkpoint_keeps_the_previous_one_and_load_falls_back(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 1})
    assert not previous_checkpoint_path(path).exists()
    save_checkpoint(path, {"epoch": 2})
    assert load_checkpoint(path)["epoch"] == 2
    assert load_checkpoint(previous_checkpoint_path(path))["epoch"] == 1
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match=r"unreadable .*previous checkpoint checkpoint.prev.pt"):
        assert load_checkpoint(path)["epoch"] == 1
    path.unlink()
    with pytest.warns(UserWarning, match="is missing; resuming from the previous checkpoint"):
        assert load_checkpoint(path)["epoch"] == 1
    previous_checkpoint_path(path).write_bytes(b"")
    with pytest.raises(CheckpointError, match="it is truncated or corrupted; delete it"):
        load_checkpoint(path)
    assert checkpoint_epoch(path) is None
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.prev.pt"]  # no *.tmp


def test_a_checkpoint_without_an_epoch_falls_back_and_only_the_trainer_requires_one(tmp_path):
    """Selectors' checkpoints (no ``epoch``) fall back like the trainer's; the trainer's keys
    refuse a file that is not one of its checkpoints in one line."""
    path = tmp_path / "search.pt"
    save_checkpoint(path, {"state": 1})
    save_checkpoint(path, {"state": 2})
    path.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match=r"previous checkpoint search.prev.pt$"):
        assert load_checkpoint(path)["state"] == 1
    with pytest.raises(CheckpointError, match=r"lacks \['epoch'\]: not a checkpoint of this kind"):
        load_checkpoint(path, TRAINER_KEYS)
    assert checkpoint_epoch(path) is None


@pytest.mark.slow
def test_a_resume_in_a_fresh_interpreter_says_its_epoch(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "bayesym", "fit", "--out", str(out), *TINY]
    subprocess.run(command, check=True, env=env, capture_output=True)
    loud = [a for a in command if a != "--quiet"]
    again = subprocess.run(loud, check=True, env=env, capture_output=True, text=True)
    assert f"resuming from epoch 2 of 2 ({out})" in again.stderr
