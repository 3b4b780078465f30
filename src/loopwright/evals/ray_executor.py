"""Task suites on a Ray cluster: ``loopwright eval SUITE --executor ray [--ray-address ADDR]``.

Each job becomes one Ray task that runs the very worker the local executor runs
(``asyncio.run(worker(job))`` in a Ray worker process), so a task's result does not depend on
where it ran: only the wall-clock does. Results come back as they finish, at most
``parallel`` tasks are in flight (model rate limits are usually the bottleneck, not CPUs),
and a suite that is interrupted cancels what is still running.

Where Ray runs:

- no address (or ``"local"``): Ray on this machine, started here unless it already runs in
  this process, and stopped again at the end. Its workers use this interpreter and see the
  same files, so sessions and workspaces land where a local run puts them.
- an address (``"auto"``, ``"ray://head:10001"``, ``"10.0.0.5:6379"``): a running cluster.
  Its nodes need loopwright installed (the project's Docker image works as a node image).
  Tasks get this process's model settings and provider keys, not its local paths: set
  ``LOOPWRIGHT_STORE`` to a PostgreSQL DSN to find every task's session in one place.

A Ray-level failure (a worker that crashed or ran out of memory, a node that left) becomes
an ``error`` result, which ``--resume`` runs again; it does not stop the suite.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from loopwright.evals.executor import Worker

if TYPE_CHECKING:
    from types import ModuleType

    from loopwright.evals.bench import TaskJob, TaskResult

log = logging.getLogger("loopwright.evals")

#: Environment variables a task needs wherever it runs: the model, provider keys and
#: endpoints, loopwright's settings, tracing.
FORWARDED_PREFIXES = ("LOOPWRIGHT_", "ANTHROPIC_", "OPENAI_", "EVALS_", "OTEL_")
#: Never sent to workers: the HTTP server's credentials have nothing to do with a suite.
NOT_FORWARDED = frozenset({"LOOPWRIGHT_TOKENS", "LOOPWRIGHT_TOKENS_FILE"})
#: Paths of this machine: sent only to Ray on this machine.
MACHINE_LOCAL = frozenset(
    {
        "LOOPWRIGHT_HOME",
        "LOOPWRIGHT_WORKSPACES",
        "LOOPWRIGHT_CACHE",
        "LOOPWRIGHT_CONFIG",
        "LOOPWRIGHT_MCP_CONFIG",
    }
)


class RayUnavailable(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached; the message says what to do."""


def run_job(worker: Worker, job: TaskJob) -> TaskResult:
    """One job, in a Ray worker process: the same coroutine the local executor awaits."""

    async def one() -> TaskResult:
        return await worker(job)

    return asyncio.run(one())


def forwarded_environment(
    env: Mapping[str, str] | None = None, *, local: bool = True
) -> dict[str, str]:
    """The variables tasks get (see :data:`FORWARDED_PREFIXES`); ``local=False`` leaves out
    this machine's paths."""
    from loopwright.settings import SETTINGS

    source = os.environ if env is None else env
    names = {s.env for s in SETTINGS}
    chosen: dict[str, str] = {}
    for name, value in source.items():
        if name in NOT_FORWARDED or (not local and name in MACHINE_LOCAL):
            continue
        if name in names or name.startswith(FORWARDED_PREFIXES):
            chosen[name] = value
    return chosen


class RayExecutor:
    """Runs suite jobs as Ray tasks (see the module docs).

    ``address``: the cluster (``None``: Ray on this machine). ``parallel``: tasks in flight
    at once. ``num_cpus``: CPUs Ray reserves per task. ``max_retries``: Ray's own retries of
    a task whose worker process died (the suite's ``--retries`` handle model outages).
    ``runtime_env``: extra Ray runtime environment for the tasks (``pip``, ``working_dir``,
    ``env_vars``...); ``forward_env`` adds this process's model settings and keys to its
    ``env_vars``. ``init_options``: more arguments for ``ray.init`` when this executor
    connects.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        parallel: int = 4,
        num_cpus: float = 1.0,
        max_retries: int = 1,
        runtime_env: Mapping[str, Any] | None = None,
        forward_env: bool = True,
        init_options: Mapping[str, Any] | None = None,
    ) -> None:
        if parallel < 1:
            raise ValueError(f"parallel must be at least 1, got {parallel}")
        if num_cpus < 0:
            raise ValueError(f"num_cpus must not be negative, got {num_cpus}")
        if max_retries < 0:
            raise ValueError(f"max_retries must not be negative, got {max_retries}")
        cleaned = (address or "").strip()
        self.address = None if cleaned in ("", "local") else cleaned
        self.parallel = parallel
        self.num_cpus = num_cpus
        self.max_retries = max_retries
        self.runtime_env = dict(runtime_env or {})
        self.forward_env = forward_env
        self.init_options = dict(init_options or {})

    @property
    def local(self) -> bool:
        """Whether the tasks run on this machine (no cluster address)."""
        return self.address is None

    def task_runtime_env(self) -> dict[str, Any]:
        """The runtime environment every task gets."""
        env = dict(self.runtime_env)
        if self.forward_env:
            given = dict(env.get("env_vars") or {})
            env["env_vars"] = {**forwarded_environment(local=self.local), **given}
        if self.local:
            # the workers are this interpreter: not a `uv run` replica Ray would otherwise
            # build when the driver was started by `uv run`
            env.setdefault("py_executable", sys.executable)
        return env

    async def map(self, worker: Worker, jobs: Sequence[TaskJob]) -> AsyncIterator[TaskResult]:
        if not jobs:  # a resumed suite with nothing left: no cluster to start
            return
        ray = _import_ray(local=self.local)
        started = self._connect(ray)
        running: dict[asyncio.Future[Any], tuple[Any, TaskJob]] = {}
        try:
            remote = ray.remote(run_job).options(
                num_cpus=self.num_cpus,
                max_retries=self.max_retries,
                runtime_env=self.task_runtime_env(),
            )
            worker_ref = ray.put(worker)
            waiting = deque(jobs)
            while waiting or running:
                while waiting and len(running) < self.parallel:
                    job = waiting.popleft()
                    ref = remote.remote(worker_ref, job)
                    running[asyncio.wrap_future(ref.future())] = (ref, job)
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    _, job = running.pop(future)
                    yield _result_of(future, job)
        finally:
            for future, (ref, _) in running.items():
                future.cancel()
                try:
                    ray.cancel(ref)
                except Exception as exc:  # the task may have finished meanwhile
                    log.debug("cancelling a Ray task failed: %s", exc)
            if started:
                ray.shutdown()

    def _connect(self, ray: ModuleType) -> bool:
        """Connect (or start Ray here); True when this executor did, so it also stops it."""
        if ray.is_initialized():
            return False
        options: dict[str, Any] = dict(self.init_options)
        if self.local:
            options.setdefault("include_dashboard", False)
            # a cluster started for one suite run reports nothing to Ray's usage statistics
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            ray.init(address=self.address, **options)
        except (ConnectionError, TimeoutError, ValueError, RuntimeError) as exc:
            where = f"the Ray cluster at {self.address}" if self.address else "Ray on this machine"
            raise RayUnavailable(
                f"cannot start or reach {where} ({_gist(exc)}); check --ray-address "
                "(a running cluster's address, e.g. ray://HEAD:10001), or leave it out to run "
                "Ray on this machine"
            ) from None
        return True

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r}, parallel={self.parallel})"


def _import_ray(*, local: bool) -> ModuleType:
    if local and "ray" not in sys.modules:
        # Ray's `uv run` integration would start workers in a fresh copy of the project
        # environment (downloading packages, without optional extras such as this one);
        # workers on this machine should simply use this interpreter
        os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    try:
        import ray
    except ImportError:
        raise RayUnavailable(
            "the Ray executor needs Ray; install it with `pip install 'loopwright[ray]'`, or "
            "use the local executor"
        ) from None
    return ray


def _result_of(future: asyncio.Future[Any], job: TaskJob) -> TaskResult:
    """The task's result, or an ``error`` result when Ray could not deliver one."""
    from loopwright.evals.bench import TaskResult

    try:
        value = future.result()
    except Exception as exc:
        detail = _gist(exc)
        hint = ""
        if "No module named" in detail:
            hint = "; install loopwright on every node of the cluster (see docs/deploy.md)"
        now = time.time()
        return TaskResult(
            task_id=job.task.id,
            epoch=job.epoch,
            status="error",
            error=f"the Ray task failed ({type(exc).__name__}: {detail}){hint}",
            started_at=now,
            finished_at=now,
        )
    if not isinstance(value, TaskResult):
        raise TypeError(f"a Ray task returned {type(value).__name__}, not a TaskResult")
    return value


def _gist(exc: BaseException) -> str:
    """The last non-empty line of an error (a Ray error's text ends with the cause)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


__all__ = [
    "FORWARDED_PREFIXES",
    "RayExecutor",
    "RayUnavailable",
    "forwarded_environment",
    "run_job",
]
