"""The Ray executor: same results as the serial one, failures named, the CLI options.

The tests that start Ray (a local instance of 2 CPUs, shared by the module) are slow: Ray
takes 10-30 s to start on a busy machine. They are skipped when Ray is not installed.
"""

import importlib.util
import json
import os
import signal
import sys

import pytest
import torch
from selector_toys import without_time

from bayesym.cli import main
from bayesym.marglik import MarglikTrainer
from bayesym.selectors import CandidateFailed, SerialExecutor
from bayesym.selectors.compare import CompareConfig, compare

CONFIG = CompareConfig(
    task="digits",
    space="translation",
    selectors=("static",),
    baselines=("conv", "fc"),
    seeds=(0,),
    train_size=48,
    val_size=24,
    test_size=40,
    budget_epochs=2.0,
    space_options={"width": 1},
    selector_options={"static": {"training.batch_size": 24}},
)


def test_the_cli_refuses_ray_options_without_the_ray_executor(tmp_path, capsys):
    base = ["compare", "--task", "digits", "--space", "translation", "--selectors", "static"]
    base += ["--out", str(tmp_path / "out")]
    cases = [
        (["--ray-address", "auto"], "--ray-address and --ray-cpus need --executor ray"),
        (["--executor", "dask"], "invalid choice: 'dask'"),
    ]
    if importlib.util.find_spec("ray") is not None:  # else: "needs Ray" (the next test)
        cases += [
            (["--executor", "ray", "--ray-cpus", "0"], "--ray-cpus must be >= 1"),
            (["--executor", "ray", "--ray-cpus", "2", "--ray-address", "auto"], "a cluster at"),
        ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err, err
    assert not (tmp_path / "out").exists()


def test_the_cli_says_how_to_install_ray_when_it_is_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    argv = ["compare", "--task", "digits", "--space", "translation", "--selectors", "static",
            "--executor", "ray", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    assert 'needs Ray: pip install "bayesym[ray]"' in capsys.readouterr().err


# ------------------------------------------------------- the executor's logic, Ray faked


class FakeRay:
    """What RayExecutor uses of ``ray``: tasks run when fetched; a killed worker is retried."""

    class exceptions:
        class RayError(Exception):
            pass

        class RayTaskError(RayError):
            def __init__(self, cause):
                super().__init__(str(cause))
                self.cause = cause

        class WorkerCrashedError(RayError):
            pass

    def __init__(self):
        self.initialised, self.init_options, self.task_options = False, None, None
        self.puts, self.cancelled, self.shutdowns = [], [], 0

    def is_initialized(self):
        return self.initialised

    def init(self, **options):
        self.initialised, self.init_options = True, options

    def shutdown(self):
        self.initialised, self.shutdowns = False, self.shutdowns + 1

    def put(self, value):
        self.puts.append(value)
        return ("ref", len(self.puts) - 1)

    def remote(self, **options):
        self.task_options = options
        fake = self

        class Task:
            def remote(self, fn, shared_ref, item, threads):
                return fake, fn, shared_ref, item, threads

        return lambda body: Task()

    def get(self, ref):
        _, fn, (_, index), item, _threads = ref
        attempts = self.task_options["max_retries"] + 1
        for _ in range(attempts):
            if item == "killed":
                continue  # the worker died: Ray runs the task again
            try:
                return fn(self.puts[index], item)
            except Exception as err:
                raise self.exceptions.RayTaskError(err) from err
        raise self.exceptions.WorkerCrashedError("worker died")

    def cancel(self, ref):
        self.cancelled.append(ref[3])


def test_the_executor_logic_with_ray_faked(monkeypatch):
    import bayesym.selectors.ray_executor as module

    fake = FakeRay()
    monkeypatch.setattr(module, "_ray", lambda: fake)
    monkeypatch.setenv("PYTHONPATH", "/code")
    executor = module.RayExecutor(num_cpus=3, max_retries=1)
    assert executor.map(square_plus, [3, 1, 2], shared={"offset": 1}) == [10, 2, 5]
    assert fake.puts == [{"offset": 1}]  # shared is put once
    assert fake.init_options["num_cpus"] == 3
    env = fake.init_options["runtime_env"]["env_vars"]
    assert env["OMP_NUM_THREADS"] == "1" and env["PYTHONPATH"] == "/code"
    assert fake.task_options == {"num_cpus": 1, "num_gpus": 0.0, "max_retries": 1}
    with pytest.raises(CandidateFailed, match=r"candidate 2 \(2\) failed: ValueError: candidate"):
        executor.map(fails_on_two, [0, 1, 2, 3, 4])
    assert fake.cancelled == [3, 4]  # the later candidates are not left running
    with pytest.raises(CandidateFailed, match=r"candidate 1 \('killed'\).*died 2 time"):
        executor.map(square_plus, [0, "killed"], shared={"offset": 0})
    executor.close()
    assert fake.shutdowns == 1 and not fake.initialised
    # a Ray instance this process had already initialised is used, and left running
    fake.initialised = True
    joined = module.RayExecutor("auto")
    assert joined.map(square_plus, [2], shared={"offset": 0}) == [4]
    joined.close()
    assert fake.shutdowns == 1


def test_bad_executor_settings_are_refused():
    from bayesym.selectors.ray_executor import RayExecutor

    for kwargs, message in [
        ({"address": "auto", "num_cpus": 2}, "num_cpus applies to a local instance"),
        ({"num_cpus": 0}, "RayExecutor.num_cpus must be a positive int or None, got 0"),
        ({"max_retries": -1}, "RayExecutor.max_retries must be an int >= 0, got -1"),
        ({"max_retries": True}, "RayExecutor.max_retries must be an int >= 0, got True"),
        ({"threads": 0}, "RayExecutor.threads must be a positive int, got 0"),
        ({"threads": 1.5}, "RayExecutor.threads must be a positive int, got 1.5"),
        ({"gpus_per_task": -1}, "RayExecutor.gpus_per_task must be >= 0 and finite, got -1"),
        ({"gpus_per_task": float("nan")}, "RayExecutor.gpus_per_task must be >= 0 and finite"),
    ]:
        with pytest.raises(ValueError, match=message):
            RayExecutor(**kwargs)


# ---------------------------------------------------------------------------- with Ray


def square_plus(shared, item):
    return item * item + shared["offset"]


def fails_on_two(shared, item):
    if item == 2:
        raise ValueError("candidate two is broken")
    return item


def dies(shared, item):
    """Kill the worker: item 1 once (a marker file remembers), item 2 every time."""
    marker = os.path.join(shared, f"died-{item}")
    if item == 2 or (item == 1 and not os.path.exists(marker)):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return item, torch.get_num_threads()


@pytest.fixture(scope="module")
def ray_executor():
    ray = pytest.importorskip("ray")
    from bayesym.selectors.ray_executor import RayExecutor

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers lack this file
    with RayExecutor(num_cpus=2, max_retries=1) as executor:
        yield executor
    assert not ray.is_initialized()  # the executor shuts down the instance it started


@pytest.mark.slow
def test_results_come_back_in_order_like_the_serial_executor(ray_executor):
    items = list(range(7))
    shared = {"offset": 10}
    got = ray_executor.map(square_plus, items, shared=shared)
    assert got == SerialExecutor().map(square_plus, items, shared=shared)
    assert ray_executor.map(square_plus, [], shared=shared) == []


@pytest.mark.slow
def test_failures_are_named_and_killed_workers_retried(ray_executor, tmp_path):
    with pytest.raises(
        CandidateFailed, match=r"candidate 2 \(2\) failed: ValueError: candidate two"
    ):
        ray_executor.map(fails_on_two, [0, 1, 2, 3])
    # item 1's worker is killed once and retried; one torch thread per task
    assert ray_executor.map(dies, [0, 1], shared=str(tmp_path)) == [(0, 1), (1, 1)]
    assert (tmp_path / "died-1").is_file()
    with pytest.raises(CandidateFailed, match=r"candidate 1 \(2\) failed: its Ray worker died 2"):
        ray_executor.map(dies, [0, 2], shared=str(tmp_path))


@pytest.mark.slow
def test_a_comparison_on_ray_equals_the_serial_one_and_resumes_across_executors(
    ray_executor, tmp_path, monkeypatch
):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as every Ray task
    try:
        compare(CONFIG, tmp_path / "serial", progress=False)
        compare(CONFIG, tmp_path / "ray", progress=False, executor=ray_executor)

        # a serial run stopped in its second cell, finished on Ray
        class Stop(Exception):
            pass

        original, calls = MarglikTrainer._map_epoch, [0]

        def stopping(self, *args):
            calls[0] += 1
            if calls[0] == 3:  # static:conv trains 2 epochs; stop in static:fc's first
                raise Stop
            return original(self, *args)

        with monkeypatch.context() as patch:
            patch.setattr(MarglikTrainer, "_map_epoch", stopping)
            with pytest.raises(Stop):
                compare(CONFIG, tmp_path / "resumed", progress=False)
        lines = []
        compare(CONFIG, tmp_path / "resumed", executor=ray_executor, log=lines.append)
    finally:
        torch.set_num_threads(threads)
    assert sum("finished earlier, skipped" in line for line in lines) == 1
    serial = json.loads((tmp_path / "serial/compare.json").read_text())
    for other in ("ray", "resumed"):
        got = json.loads((tmp_path / other / "compare.json").read_text())
        for key in ("rows", "summary"):
            assert without_time(got[key]) == without_time(serial[key]), (other, key)
