"""The `bayesym` command line, end to end in-process (and once through `python -m`)."""

import argparse
import subprocess
import sys

import matplotlib.image
import pytest

import bayesym.cli
from bayesym.cli import main
from bayesym.data import TASKS


def test_data_list_prints_every_task(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name, spec in TASKS.items():
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert str(spec.num_classes) in line and spec.description in line


@pytest.mark.parametrize(
    ("task", "n", "split"),
    [("quadrant-position-digits", 6, "train"), ("aen-digits-Aug5", 16, "test")],
    ids=["quadrant-position", "aen"],
)
def test_data_show_writes_a_png(tmp_path, capsys, task, n, split):
    out = tmp_path / "grid.png"
    code = main(["data", "show", task, "--out", str(out), "--n", str(n), "--split", split])
    assert code == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(out)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels[..., :3].std() > 0.05  # something was drawn
    assert f"wrote {out}" in capsys.readouterr().out


def _error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("bayesym: error: ")
    return err


def test_unknown_task_is_one_clean_line_with_exit_code_2(tmp_path, capsys):
    assert main(["data", "show", "nope-digits", "--out", str(tmp_path / "x.png")]) == 2
    err = _error_line(capsys)
    assert "unknown task 'nope-digits'" in err and "quadrant-digits" in err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["data", "show", "digits", "--out", "{tmp}/x.txt"], 2, "unsupported image format .txt"),
        (["data", "show", "digits", "--out", "{tmp}/no/x.png"], 2, "does not exist"),
        (["data", "show", "digits", "--out", "{tmp}/x.png", "--n", "0"], 2, "--n: must be >= 1"),
        (["data", "show", "digits", "--out", "{tmp}/x.png", "--n", "5000"], 2, "exceeds the 1200"),
        (["data", "show", "digits", "--out", "{tmp}/x.png", "--split", "dev"], 2, "invalid choice"),
        (["data", "show", "digits"], 2, "--out"),
        (["data", "show", "fmnist", "--out", "{tmp}/x.png", "--root", "{tmp}"], 1, "not found"),
        (["data", "frobnicate"], 2, "invalid choice"),
    ],
    ids=["format", "directory", "n-zero", "n-too-big", "split", "no-out", "no-files", "command"],
)
def test_user_errors_are_one_clean_line(tmp_path, capsys, args, code, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(argv) == code
    assert message in _error_line(capsys)


def test_help_and_missing_command(capsys):
    assert main(["--help"]) == 0
    assert "data" in capsys.readouterr().out
    assert main([]) == 2
    assert "usage: bayesym" in capsys.readouterr().err
    assert main(["data"]) == 2


def test_a_new_subcommand_needs_one_registration(monkeypatch, capsys):
    def register(subparsers: argparse._SubParsersAction) -> None:
        parser = subparsers.add_parser("hello", help="say hello")
        parser.add_argument("--name", default="world")
        parser.set_defaults(handler=lambda args: print(f"hello {args.name}") or 0)

    monkeypatch.setattr(bayesym.cli, "SUBCOMMANDS", (*bayesym.cli.SUBCOMMANDS, register))
    assert main(["hello", "--name", "bayes"]) == 0
    assert capsys.readouterr().out == "hello bayes\n"
    assert main(["data", "list"]) == 0


def test_module_entry_point_runs_in_a_subprocess():
    result = subprocess.run(
        [sys.executable, "-m", "bayesym.cli", "data", "show", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("bayesym: error: ")
    assert "Traceback" not in result.stderr
