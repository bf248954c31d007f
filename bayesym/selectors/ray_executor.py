"""Candidates as Ray tasks: a local Ray instance by default, or an existing Ray cluster.

:class:`RayExecutor` is a :class:`~bayesym.selectors.executor.CandidateExecutor`: it runs
``fn(shared, item)`` for every item as one Ray task each and returns the results in the order
of ``items``. ``shared`` is put into Ray's object store once (``ray.put``) and every task
reads it from there. Each task uses one CPU and one torch thread, so ``N`` CPUs train ``N``
candidates at a time without oversubscribing the cores; the candidates' results do not
depend on the executor (every candidate seeds itself), so a comparison run serially and one
run on Ray give the same tables, and a comparison started with one executor resumes with the
other (the candidates' checkpoints are files in the run directory, which on a cluster must
be on a file system every node sees).

Failures are never silent: a task whose worker process dies (killed, out of memory, node
lost) is retried by Ray up to ``max_retries`` times; an exception raised by ``fn`` itself
is not retried (it would recur). Either way the first failing candidate, in the order of
``items``, raises :class:`~bayesym.selectors.executor.CandidateFailed` naming it and the
cause.

Ray is an optional dependency (``pip install "bayesym[ray]"``); it is imported when the
executor first runs.

Example (needs Ray; starts a local instance of two CPUs):

    .. code-block:: python

        from bayesym.selectors.ray_executor import RayExecutor

        with RayExecutor(num_cpus=2) as executor:
            squares = executor.map(pow, [1, 2, 3], shared=2)  # [pow(2, 1), pow(2, 2), ...]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from bayesym.checks import is_positive_int
from bayesym.selectors.config_checks import (
    check_fields,
    check_non_negative,
    check_optional_positive_int,
    check_positive_int,
)
from bayesym.selectors.executor import CandidateExecutor, CandidateFailed, Item, Result

__all__ = ["RayExecutor"]


def _ray() -> ModuleType:
    """The ``ray`` module, or an error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError(
            'the Ray executor needs Ray: pip install "bayesym[ray]" (or "ray>=2.60")'
        ) from None
    return ray


def _run_candidate(fn: Callable[[Any, Any], Any], shared: Any, item: Any, threads: int) -> Any:
    """The body of one Ray task: ``fn(shared, item)`` with ``threads`` torch threads."""
    import torch

    torch.set_num_threads(threads)
    return fn(shared, item)


class RayExecutor(CandidateExecutor):
    """Runs every candidate as a Ray task (module docstring).

    Args:
        address: address of a running Ray cluster (``"auto"``, ``"ray://host:10001"``,
            ``"host:6379"``); ``None`` (default): connect to the Ray instance this process
            already initialised, else start a local one.
        num_cpus: CPUs of a local instance started here (default: all of this machine's).
        max_retries: times a candidate whose worker died is run again before it fails.
        threads: torch threads per task (default 1: one per CPU the task holds).
        gpus_per_task: GPUs each task holds (e.g. 1, or 0.5 for two candidates per GPU);
            Ray shows a task only its GPUs, as ``cuda:0``, ``cuda:1``, ... (default 0).
        runtime_env: Ray runtime environment of the tasks (e.g. ``{"working_dir": "."}``
            on a cluster whose nodes lack the code).

    Raises:
        ValueError: for ``num_cpus`` with an ``address`` (a cluster has its own CPUs), or
            a ``num_cpus`` or ``threads`` that is not a positive int, a ``max_retries`` that
            is not an int ``>= 0``, a ``gpus_per_task`` below 0 or not finite.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        max_retries: int = 2,
        threads: int = 1,
        gpus_per_task: float = 0.0,
        runtime_env: Mapping[str, Any] | None = None,
    ) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.max_retries = max_retries
        self.threads = threads
        self.gpus_per_task = gpus_per_task
        self.runtime_env = dict(runtime_env or {})
        if address is not None and num_cpus is not None:
            raise ValueError("RayExecutor: num_cpus applies to a local instance, not to address=")
        check_optional_positive_int(self, "num_cpus")
        check_fields(
            self,
            ("max_retries",),
            lambda v: (v == 0 and type(v) is int) or is_positive_int(v),
            "must be an int >= 0",
        )
        check_positive_int(self, "threads")
        check_non_negative(self, "gpus_per_task")
        self._started = False  # whether this executor started Ray (and shuts it down)

    def start(self) -> None:
        """Connect to Ray now (else at the first :meth:`map`): start or join the instance."""
        self._connect()

    def _connect(self) -> ModuleType:
        ray = _ray()
        if not ray.is_initialized():
            env = {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
            runtime_env = {**self.runtime_env}
            runtime_env["env_vars"] = {**env, **runtime_env.get("env_vars", {})}
            # the driver's import path, so that workers find the code it runs from
            path = os.environ.get("PYTHONPATH")
            if path and self.address is None:
                runtime_env["env_vars"].setdefault("PYTHONPATH", path)
            ray.init(
                address=self.address,
                num_cpus=self.num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                runtime_env=runtime_env,
            )
            self._started = True
        return ray

    def run_all(self, fn: Callable[[Any, Item], Result], items: list[Item], shared: Any) -> list:
        """Every item a Ray task; the results in order.

        Raises:
            CandidateFailed: naming the first item (in order) whose task failed after the
                retries, with the cause.
        """
        ray = self._connect()
        task = ray.remote(
            num_cpus=self.threads, num_gpus=self.gpus_per_task, max_retries=self.max_retries
        )(_run_candidate)
        shared_ref = ray.put(shared)
        refs = [task.remote(fn, shared_ref, item, self.threads) for item in items]
        results = []
        for index, (item, ref) in enumerate(zip(items, refs, strict=True)):
            try:
                results.append(ray.get(ref))
            except ray.exceptions.RayTaskError as err:  # fn raised: not retried
                for other in refs[index + 1 :]:
                    ray.cancel(other)
                cause = err.cause if err.cause is not None else err
                raise CandidateFailed(
                    f"candidate {index} ({item!r}) failed: {type(cause).__name__}: {cause}"
                ) from err
            except ray.exceptions.RayError as err:  # worker died max_retries + 1 times
                for other in refs[index + 1 :]:
                    ray.cancel(other)
                raise CandidateFailed(
                    f"candidate {index} ({item!r}) failed: its Ray worker died "
                    f"{self.max_retries + 1} time(s) ({type(err).__name__}); raise "
                    "max_retries or check the workers' memory"
                ) from err
        return results

    def close(self) -> None:
        """Shut down the Ray instance this executor started (not one it connected to)."""
        if self._started:
            _ray().shutdown()
            self._started = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
