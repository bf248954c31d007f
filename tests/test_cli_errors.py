"""`bayesym fit` on bad input and faults, run as a user runs it (a subprocess).

A command that fails to start writes nothing, so the corrected command with the same --out
runs; faults (read-only or full disk, Ctrl-C) end in one line naming the file or the epoch to
resume from, leave no temporary file, and the same command resumes afterwards.
"""

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bayesym.cli import main

ROOT = Path(__file__).resolve().parents[1]

TINY = ["--width", "1", "--train-subset", "32", "--batch-size", "32", "--epochs", "2",
        "--burn-in", "1", "--hyper-every", "1", "--hyper-steps", "1", "--quiet"]  # fmt: skip
"""A marglik fit of a few seconds: hyper steps after both epochs."""


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m bayesym ARGS`` in a fresh interpreter, as a user's shell runs it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "bayesym", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def one_line(stderr: str) -> str:
    """The single line a failure prints (no traceback, nothing else)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


BAD = {
    "--epochs -1": (["--epochs", "-1"], "epochs must be a positive int"),
    "--lr nan": (["--lr", "nan"], "--lr: must be a positive finite number, got nan"),
    "--batch-size 0": (["--batch-size", "0"], "batch_size must be a positive int"),
    "--width 0": (["--width", "0"], "width must be a positive int"),
    "--group Q8": (
        ["--kind", "ffc+conv+gconv", "--group", "Q8"],
        "--group: invalid choice: 'Q8' (choose from 'C1', 'C2', 'C4', 'D1', 'D2', 'D4')",
    ),
    "missing dataset": (
        ["--task", "fmnist", "--root", "{missing}"],
        "Fashion-MNIST not found in",
    ),
}


def _bad_arguments(name: str, tmp_path: Path) -> tuple[list[str], str]:
    extra, message = BAD[name]
    return [a.replace("{missing}", str(tmp_path / "nowhere")) for a in extra], message


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_command_writes_nothing(tmp_path, capsys, name):
    extra, message = _bad_arguments(name, tmp_path)
    out = tmp_path / "run"
    assert main(["fit", "--out", str(out), *TINY, *extra]) in (1, 2)
    assert message in one_line(capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_command_writes_nothing_in_a_fresh_interpreter(tmp_path, name):
    extra, message = _bad_arguments(name, tmp_path)
    out = tmp_path / "run"
    result = run_cli("fit", "--out", str(out), *TINY, *extra)
    assert result.returncode in (1, 2)
    assert message in one_line(result.stderr)
    assert not out.exists()


def test_the_corrected_command_runs_in_the_directory_of_a_failed_one(tmp_path):
    """--lr nan and --group Q8 used to write config.json first and then block the directory."""
    out = tmp_path / "run"
    assert main(["fit", "--out", str(out), *TINY, "--lr", "nan"]) == 2
    assert main(["fit", "--out", str(out), *TINY, "--kind", "gconv", "--group", "Q8"]) == 2
    assert main(["fit", "--out", str(out), *TINY, "--kind", "conv", "--group", "C4"]) == 2
    assert not out.exists()
    assert main(["fit", "--out", str(out), *TINY, "--lr", "0.001"]) == 0
    assert (out / "metrics.json").is_file()


def test_epochs_before_the_first_marglik_step_are_refused_in_words(tmp_path, capsys):
    assert main(["fit", "--out", str(tmp_path / "run"), "--epochs", "1", "--quiet"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "--epochs 1 ends before the first marginal-likelihood step (after epoch 10" in line
    assert "--map" in line
    assert not (tmp_path / "run").exists()
    # the demo's message leaves out --map, which the demo does not have
    assert main(["demo", "--out", str(tmp_path / "demo"), "--epochs", "3", "--quiet"]) == 2
    assert "--map" not in one_line(capsys.readouterr().err)
    assert not (tmp_path / "demo").exists()
    # with the schedule fixed the same --out trains (here MAP: no prior learned on purpose)
    assert main(["fit", "--out", str(tmp_path / "run"), *TINY, "--epochs", "1", "--map"]) == 0


def test_a_group_for_a_kind_without_one_is_refused(tmp_path, capsys):
    assert (
        main(["fit", "--out", str(tmp_path / "r"), *TINY, "--kind", "conv", "--group", "C4"]) == 2
    )
    err = capsys.readouterr().err
    assert "--group C4 applies only to the group kinds (gconv," in err and "--kind conv" in err


def test_a_train_subset_larger_than_the_data_is_warned_about(tmp_path, capsys):
    args = ["fit", "--out", str(tmp_path / "r"), *TINY, "--map", "--epochs", "1"]
    assert main([*args, "--train-subset", "5000", "--kind", "conv"]) == 0
    err = capsys.readouterr().err
    assert (
        "bayesym: warning: train_subset=5000 is more than the 1200 training images of "
        "quadrant-digits; training on all 1200" in err
    )


def test_a_read_only_directory_is_one_line_naming_the_file(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    out.chmod(0o555)
    try:
        if os.access(out, os.W_OK):
            pytest.skip("chmod does not stop this user from writing (root)")
        result = run_cli("fit", "--out", str(out), *TINY)  # a fresh interpreter, as a user
        line = one_line(result.stderr)
        assert result.returncode == 1
        assert f"cannot write {out / 'config.json'}: Permission denied" in line
        assert "writable" in line
        assert list(out.iterdir()) == []
    finally:
        out.chmod(0o755)
    assert main(["fit", "--out", str(out), *TINY]) == 0  # the same command, once writable


def test_an_unwritable_run_file_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    """Fault injection for users whom chmod cannot stop (root): config.json refused."""
    out = tmp_path / "run"
    real_write_text = Path.write_text

    def refuse_config(self, *args, **kwargs):
        if self.name == "config.json":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", refuse_config)
    assert main(["fit", "--out", str(out), *TINY]) == 1
    line = one_line(capsys.readouterr().err)
    assert line == (
        f"bayesym: error: cannot write {out / 'config.json'}: Permission denied; free disk "
        f"space or make {out} writable (or choose another --out), then rerun the same command"
    )
    assert list(out.iterdir()) == []


def test_a_full_disk_is_one_line_leaves_no_temporary_file_and_resumes(
    tmp_path, monkeypatch, capsys
):
    """Fault injection: the second checkpoint write fails with ENOSPC after writing a little."""
    out = tmp_path / "run"
    real_save = torch.save
    calls = []

    def full_disk(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    assert main(["fit", "--out", str(out), *TINY]) == 1
    line = one_line(capsys.readouterr().err)
    assert f"cannot write the checkpoint {out / 'checkpoint.pt'}: No space left on device" in line
    assert "rerun the same command to resume" in line
    assert not list(out.glob("*.tmp"))
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 1  # kept
    monkeypatch.setattr(torch, "save", real_save)
    assert main(["fit", "--out", str(out), *TINY]) == 0
    assert "resuming from epoch 1 of 2" in capsys.readouterr().err


def test_an_interrupt_is_one_line_with_the_epoch_to_resume_from(tmp_path, monkeypatch, capsys):
    """Ctrl-C in epoch 2 (KeyboardInterrupt raised as the second checkpoint is written)."""
    out = tmp_path / "run"
    real_save = torch.save
    calls = []

    def interrupted(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            f.write(b"partial")
            raise KeyboardInterrupt
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", interrupted)
    assert main(["fit", "--out", str(out), *TINY]) == 130
    line = one_line(capsys.readouterr().err)
    assert line == f"bayesym: interrupted; rerun the same command to resume from epoch 1 ({out})"
    assert not list(out.glob("*.tmp"))


@pytest.mark.slow
def test_ctrl_c_is_one_line_with_the_epoch_to_resume_from_and_exit_130(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    args = [a if a != "2" else "500" for a in TINY]  # --epochs 500: interrupted long before
    proc = subprocess.Popen(
        [sys.executable, "-m", "bayesym", "fit", "--out", str(out), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "checkpoint.prev.pt").is_file():
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    line = one_line(stderr)
    epoch = torch.load(out / "checkpoint.pt", weights_only=False)["epoch"]
    assert line == (
        f"bayesym: interrupted; rerun the same command to resume from epoch {epoch} ({out})"
    )
    assert not list(out.glob("*.tmp"))
