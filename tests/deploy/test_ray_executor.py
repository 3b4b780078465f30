"""The Ray executor: a task suite run as Ray tasks (Ray started on this machine by the test)
gives the local executor's results, in other processes, and survives a crashed worker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from loopwright.evals import LocalExecutor, run_suite
from loopwright.evals.bench import SuiteRun, TaskJob, TaskResult
from loopwright.evals.ray_executor import RayExecutor, forwarded_environment
from loopwright.evals.suite import Suite, Task, load_suite
from loopwright.sessions.sqlite import SQLiteStore

from .conftest import REPO

EXAMPLE = REPO / "examples" / "evals" / "basic.yaml"


@pytest.fixture(scope="module")
def ray_local() -> Iterator[ModuleType]:
    """Ray on 127.0.0.1 for this module: two CPUs, no dashboard, no usage reports."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        patch.setenv("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
        import ray

        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
        try:
            yield ray
        finally:
            ray.shutdown()


def outcomes(run: SuiteRun) -> dict[str, tuple[Any, ...]]:
    """What a task's run produced, without where and when it ran."""
    return {
        r.task_id: (
            r.status,
            r.answer,
            r.stop_reason,
            [(c.name, c.passed, c.detail) for c in r.checks],
            r.error,
            r.tool_calls,
            r.tool_errors,
            r.model_calls,
            r.total_tokens,
        )
        for r in run.results
    }


def test_a_suite_on_ray_gives_the_local_executors_results(
    ray_local: ModuleType, loopwright_home: Path, tmp_path: Path
) -> None:
    suite = load_suite(EXAMPLE)

    local = asyncio.run(
        run_suite(suite, model="scripted", executor=LocalExecutor(2), output=tmp_path / "l.json")
    )
    on_ray = asyncio.run(
        run_suite(
            suite,
            model="scripted",
            executor=RayExecutor(parallel=2),
            output=tmp_path / "r.json",
        )
    )

    assert len(on_ray.results) == len(suite.tasks)
    assert outcomes(on_ray) == outcomes(local)
    assert on_ray.summary().passed == len(suite.tasks)
    assert SuiteRun.load(tmp_path / "r.json").complete
    # the Ray workers saved their sessions where this process's settings say
    store = SQLiteStore(loopwright_home / "sessions.db")
    try:
        for result in on_ray.results:
            assert store.exists(result.session_id), result.task_id
    finally:
        store.close()
    hello = next(r for r in on_ray.results if r.task_id == "hello-file")
    assert (Path(hello.workspace) / "hello.txt").read_text() == "Hello World"


def small_suite(count: int) -> Suite:
    return Suite(
        name="pids",
        tasks=[Task(id=f"t{i}", prompt=f"task {i}", script=["ok"]) for i in range(count)],
    )


def test_tasks_run_in_ray_worker_processes(ray_local: ModuleType) -> None:
    async def where(job: TaskJob) -> TaskResult:  # by value to the workers: a closure
        import os

        return TaskResult(
            task_id=job.task.id, epoch=job.epoch, status="passed", answer=str(os.getpid())
        )

    async def collect() -> list[TaskResult]:
        from loopwright.evals.bench import plan_jobs

        executor = RayExecutor(parallel=3)
        return [r async for r in executor.map(where, plan_jobs(small_suite(5), epochs=1))]

    results = asyncio.run(collect())
    assert sorted(r.task_id for r in results) == [f"t{i}" for i in range(5)]
    pids = {int(r.answer) for r in results}
    assert os.getpid() not in pids


def test_a_crashed_worker_is_an_error_result_and_the_others_finish(
    ray_local: ModuleType,
) -> None:
    async def fragile(job: TaskJob) -> TaskResult:
        import os

        if job.task.id == "t1":
            os._exit(3)  # the worker process dies, as on an out-of-memory kill
        return TaskResult(task_id=job.task.id, epoch=job.epoch, status="passed")

    async def collect() -> list[TaskResult]:
        from loopwright.evals.bench import plan_jobs

        executor = RayExecutor(parallel=2, max_retries=0)
        return [r async for r in executor.map(fragile, plan_jobs(small_suite(3), epochs=1))]

    results = {r.task_id: r for r in asyncio.run(collect())}
    assert set(results) == {"t0", "t1", "t2"}
    assert results["t0"].passed
    assert results["t2"].passed
    crashed = results["t1"]
    assert crashed.status == "error"
    assert crashed.error is not None
    assert crashed.error.startswith("the Ray task failed")


def test_workers_get_model_settings_but_not_server_tokens_or_remote_paths(
    tmp_path: Path,
) -> None:
    env = {
        "LOOPWRIGHT_MODEL": "anthropic",
        "ANTHROPIC_API_KEY": "sk-test",
        "LOOPWRIGHT_STORE": "postgresql://db/x",
        "LOOPWRIGHT_HOME": str(tmp_path),
        "LOOPWRIGHT_TOKENS": "t=alice",
        "EVALS_MODEL": "openai",
        "HOME": "/root",
        "PATH": "/usr/bin",
    }
    local = forwarded_environment(env, local=True)
    assert set(local) == {
        "LOOPWRIGHT_MODEL",
        "ANTHROPIC_API_KEY",
        "LOOPWRIGHT_STORE",
        "LOOPWRIGHT_HOME",
        "EVALS_MODEL",
    }
    remote = forwarded_environment(env, local=False)
    assert set(remote) == set(local) - {"LOOPWRIGHT_HOME"}
    cluster = RayExecutor("ray://head:10001", runtime_env={"pip": ["loopwright"]})
    assert cluster.local is False
    assert "py_executable" not in cluster.task_runtime_env()
    assert cluster.task_runtime_env()["pip"] == ["loopwright"]
    assert RayExecutor().task_runtime_env()["py_executable"].endswith("python")


def test_bad_settings_are_refused_with_what_to_fix() -> None:
    with pytest.raises(ValueError, match="parallel must be at least 1"):
        RayExecutor(parallel=0)
    with pytest.raises(ValueError, match="max_retries"):
        RayExecutor(max_retries=-1)
    assert RayExecutor("local").local
    assert RayExecutor("  ").local


def eval_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "OPENAI"))}
    env.update(LOOPWRIGHT_MODEL="scripted", NO_COLOR="1", COLUMNS="120")
    return subprocess.run(
        [sys.executable, "-m", "loopwright.cli.app", "eval", str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )


def test_loopwright_eval_with_executor_ray_starts_ray_and_matches_a_local_run(
    tmp_path: Path,
) -> None:
    """The command starts Ray on this machine itself (and stops it) when given no address."""
    on_ray = eval_cli(tmp_path, "--executor", "ray", "--parallel", "2", "-o", "ray.json")
    assert on_ray.returncode == 0, on_ray.stderr
    local = eval_cli(tmp_path, "--parallel", "2", "-o", "local.json")
    assert local.returncode == 0, local.stderr
    assert outcomes(SuiteRun.load(tmp_path / "ray.json")) == outcomes(
        SuiteRun.load(tmp_path / "local.json")
    )


def test_loopwright_eval_refuses_an_unknown_executor_or_a_stray_address(tmp_path: Path) -> None:
    unknown = eval_cli(tmp_path, "--executor", "dask")
    assert unknown.returncode == 2
    assert "unknown executor 'dask'; use local or ray" in unknown.stderr
    stray = eval_cli(tmp_path, "--ray-address", "ray://head:10001")
    assert stray.returncode == 2
    assert "--executor ray" in stray.stderr
    assert not list(tmp_path.glob("*.json"))
