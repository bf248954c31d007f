"""Data-parallel marglik on 2 gloo processes (CPU, float64) equals one process on the same data.

The ranks run ``distributed_worker.py`` with the torchrun environment; the one-process
reference is computed here from the same builders.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import distributed_worker as worker
import pytest
import torch

from bayesym.marglik.distributed import DataParallel
from curvature import compute_kfac

WORKER = Path(worker.__file__)
TIMEOUT = 60  # seconds for a launch; a dead rank must fail the survivor well within it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(out: Path, world_size: int = 2) -> list[subprocess.CompletedProcess]:
    port = str(_free_port())
    procs = []
    for rank in range(world_size):
        env = dict(
            os.environ,
            RANK=str(rank),
            WORLD_SIZE=str(world_size),
            LOCAL_RANK=str(rank),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
            OMP_NUM_THREADS="1",
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), str(out)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    deadline = time.monotonic() + TIMEOUT
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"a rank hung for more than {TIMEOUT} s")
        results.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return results


@pytest.fixture(scope="module")
def equal_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    survivor, killed = launch(out)
    assert survivor.returncode == 0, f"rank 0 failed:\n{survivor.stderr[-3000:]}"
    assert killed.returncode == -9, f"rank 1 was not killed:\n{killed.stderr[-3000:]}"
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)], out


def close(a, b, tol=1e-6):
    return torch.allclose(torch.as_tensor(a), torch.as_tensor(b), rtol=tol, atol=tol)


def test_summed_kfac_and_marglik_equal_one_process(equal_run):
    ranks, _ = equal_run
    torch.set_default_dtype(torch.float64)
    try:
        model, x, y = worker.kfac_problem()
        reference = worker.kfac_summary(model, compute_kfac(model, [(x, y)], "classification"))
    finally:
        torch.set_default_dtype(torch.float32)
    for result in ranks:  # every rank holds the KFAC of all the data
        got = result["kfac"]
        assert got["num_data"] == 21  # shards of 11 and 10
        assert set(got["factors"]) == set(reference["factors"])
        for name, factors in reference["factors"].items():
            for mine, ref in zip(got["factors"][name], factors, strict=True):
                assert close(mine, ref), name
        assert close(got["log_likelihood"], reference["log_likelihood"])
        assert close(got["marglik"], reference["marglik"])
    # one shard alone is far from the whole: the check above can fail
    torch.set_default_dtype(torch.float64)
    try:
        alone = worker.kfac_summary(
            model, compute_kfac(model, [(x[::2], y[::2])], "classification")
        )
    finally:
        torch.set_default_dtype(torch.float32)
    assert not close(alone["marglik"], reference["marglik"], tol=1e-2)


def test_data_parallel_training_equals_one_process(equal_run):
    ranks, _ = equal_run
    torch.set_default_dtype(torch.float64)
    try:
        reference = worker.train()
    finally:
        torch.set_default_dtype(torch.float32)
    assert len(set(reference["marglik"][1:])) == 3  # hyper steps after every epoch past 1
    for result in ranks:
        for key in ("train", "resumed"):  # uninterrupted, and stopped + resumed
            got = result[key]
            assert close(got["precisions"], reference["precisions"])
            assert not close(got["precisions"], torch.ones_like(got["precisions"]))
            for name, value in reference["parameters"].items():
                assert close(got["parameters"][name], value), name
            assert close(got["marglik"][1:], reference["marglik"][1:])
            assert close(got["train_loss"], reference["train_loss"])


def test_data_parallel_training_from_a_loader_equals_one_process(equal_run):
    ranks, _ = equal_run
    torch.set_default_dtype(torch.float64)
    try:
        reference = worker.train(loader_seed=5)
    finally:
        torch.set_default_dtype(torch.float32)
    assert not close(reference["precisions"], worker.train()["precisions"])  # other batches
    for result in ranks:
        got = result["loader"]
        assert close(got["precisions"], reference["precisions"])
        for name, value in reference["parameters"].items():
            assert close(got["parameters"][name], value), name
        assert "the ranks received different batches" in result["unequal_loaders"]
        assert "generator=torch.Generator().manual_seed(0)" in result["unequal_loaders"]


def test_killed_rank_fails_the_survivor_with_a_clear_error(equal_run):
    ranks, _ = equal_run
    message, seconds = ranks[0]["failure"]
    assert message.startswith("rank 0 of 2: a collective operation failed")
    assert "relaunch all ranks to resume" in message
    assert seconds < TIMEOUT  # the process group's timeout is 30 s; the failure is immediate


def test_only_rank_zero_writes_the_run_directory(equal_run):
    ranks, out = equal_run
    assert {"checkpoint.pt", "history.json"} <= set(ranks[0]["files"])
    assert not list((out / "run").glob("*.tmp"))


def test_shards_interleave_and_weight_the_batch_mean():
    x, y = torch.arange(7.0)[:, None], torch.arange(7)
    first, second = DataParallel(0, 2).shard(x, y), DataParallel(1, 2).shard(x, y)
    assert first[1].tolist() == [0, 2, 4, 6] and second[1].tolist() == [1, 3, 5]
    assert first[2] == pytest.approx(8 / 7) and second[2] == pytest.approx(6 / 7)
    # the weighted shard means average to the batch mean
    assert (first[2] * first[0].mean() + second[2] * second[0].mean()) / 2 == pytest.approx(3.0)


def test_mapping_batches_are_sharded_and_curvature_batches_dealt_round_robin():
    x = {"pixels": torch.arange(5.0)[:, None], "name": "kept"}
    local, y, weight = DataParallel(1, 2).shard(x, torch.arange(5))
    assert local["pixels"].flatten().tolist() == [1.0, 3.0] and local["name"] == "kept"
    assert y.tolist() == [1, 3] and weight == pytest.approx(4 / 5)
    assert list(DataParallel(1, 3).curvature_batches("abcdefg")) == ["b", "e"]


def test_batches_that_would_leave_a_rank_empty_are_refused():
    DataParallel(0, 2).check_batches(51, 16)  # last batch of 3
    with pytest.raises(ValueError, match=r"at least 2 points \(batch size 16, last batch 1 of 49"):
        DataParallel(0, 2).check_batches(49, 16)
    with pytest.raises(ValueError, match="batch size 1"):
        DataParallel(0, 2).check_batches(8, 1)
    with pytest.raises(ValueError, match="at least 2 points, got one of 1"):
        DataParallel(1, 2).shard(torch.zeros(1, 3), torch.zeros(1))


def test_a_rank_without_curvature_data_is_refused_on_every_rank(tmp_path):
    import torch.distributed as dist

    from curvature.distributed import check_every_rank_has_data

    init = f"file://{tmp_path / 'store'}"
    dist.init_process_group("gloo", init_method=init, rank=0, world_size=1)
    try:
        assert check_every_rank_has_data(5, torch.device("cpu")) == 5
        with pytest.raises(ValueError, match=r"ranks \[0\] received no curvature data"):
            check_every_rank_has_data(0, torch.device("cpu"))
    finally:
        dist.destroy_process_group()
