"""What `bayesym demo`, `fit`, `report` and `--help` show: the task that runs, each path with
the symmetry it stands for, tables with a legend and whole names, the files written, plot
titles, defaults and valid values; and the thread default that keeps them fast."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bayesym.cli import main
from bayesym.cli.options import DEFAULT_THREADS, set_threads
from bayesym.marglik.history import load_history
from bayesym.report import history_figure, path_label
from bayesym.runs import RUN_FILES, load_groups

ROOT = Path(__file__).resolve().parents[1]

TINY = ["--width", "1", "--train-subset", "32", "--batch-size", "32", "--epochs", "1",
        "--burn-in", "1", "--hyper-every", "1", "--hyper-steps", "1"]  # fmt: skip


@pytest.fixture
def threads():
    """Restore torch's thread count after a test that runs the CLI in this process."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_demo_names_its_tasks_paths_with_symmetries_and_files(tmp_path, capsys, threads):
    torch.set_num_threads(2)
    assert main(["demo", "--out", str(tmp_path), *TINY]) == 0  # progress bars on
    assert torch.get_num_threads() == DEFAULT_THREADS == 1  # the default, without --threads
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    # progress: which task runs
    assert "[task 1 of 2] quadrant-digits: " in err
    assert "[task 2 of 2] quadrant-position-digits: " in err
    assert "quadrant-digits marglik" in err and "quadrant-position-digits marglik" in err
    # summary: each chosen path with its symmetry, for every block on both tasks
    summary = out[out.index("== learned symmetry per layer") :]
    rows = [line for line in summary.splitlines() if line.startswith("blocks.")]
    assert len(rows) == 8
    labels = {path_label("conv", "translations"), path_label("ffc", "none")}
    for row in rows:
        _, inv, pos = (cell.strip() for cell in row.split("  ") if cell.strip())
        assert inv in labels and pos in labels, row
    # tables: a legend of every column, names not cut
    for column in ("layer:", "path:", "symmetry:", "precision:", "|θ|²:", "γ:", "relative:",
                   "count-only:", "lg δ/δmin:", "chosen:"):  # fmt: skip
        assert f"\n{column} " in out or f"; {column} " in out, column
    assert " SpatialConv2d " in out and "SpatialConv2d (translations)" in out
    # files: listed once for both run directories, each with what it holds
    listing = out[out.index("files written in each of") :]
    for name, what in RUN_FILES.items():
        if name != "checkpoint.prev.pt":  # one epoch: no previous checkpoint
            assert f"  {name:<19} {what}" in listing
    for task in ("quadrant-digits", "quadrant-position-digits"):
        assert (tmp_path / task / "plot.png").is_file()


def test_report_shows_symmetries_and_plots_are_titled_with_the_task(tmp_path, capsys, threads):
    out = tmp_path / "run"
    assert main(["fit", "--out", str(out), "--task", "quadrant-position-digits", *TINY]) == 0
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    table = capsys.readouterr().out
    assert "blocks.0.layer ffc" in table and "translations" in table and "no symmetry" in table
    groups = load_groups(out)
    figure = history_figure(load_history(out / "history.json"), groups, "a title")
    assert figure._suptitle.get_text() == "a title"
    # the title fit and report write: the task, the network and the method
    from bayesym.runs import RunConfig, run_title

    assert run_title(RunConfig(task="quadrant-position-digits")) == (
        "quadrant-position-digits: ffc+conv, marglik"
    )


def test_fit_help_shows_defaults_kinds_and_groups():
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-m", "bayesym", "fit", "--help"],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
        check=True,
    )
    text = " ".join(result.stdout.split())
    assert "(default: 40)" in text and "(default: 0.001)" in text and "(default: 16)" in text
    assert "(default: ffc+conv; one of: fc, conv, ffc," in text
    assert "one of: C1, C2, C4, D1, D2, D4" in text
    assert f"(default: {DEFAULT_THREADS}," in text


def test_explicit_threads_are_used_and_none_means_the_default(threads):
    set_threads(2)
    assert torch.get_num_threads() == 2
    set_threads(None)
    assert torch.get_num_threads() == DEFAULT_THREADS
