"""Where suite tasks run: an executor takes jobs and a worker and yields results as they finish.

:class:`LocalExecutor` runs them as asyncio tasks in this process, ``parallel`` at a time.
Another executor (a Ray cluster, a process pool) implements the same one-method interface:
it gets a picklable ``worker`` (``await worker(job) -> TaskResult``, which never raises for a
task's sake: failures are results) and picklable :class:`~loopwright.evals.bench.TaskJob`
objects, runs ``worker(job)`` wherever it likes (``asyncio.run(worker(job))`` in a remote
process), and yields each result as soon as it is back, so the result file grows as the suite
runs. When the consumer stops iterating (an interrupted suite), it must cancel what is still
running.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol, TypeAlias

if TYPE_CHECKING:
    from loopwright.evals.bench import TaskJob, TaskResult

Worker: TypeAlias = "Callable[[TaskJob], Awaitable[TaskResult]]"


class Executor(Protocol):
    """Runs suite jobs; see the module docs."""

    def map(self, worker: Worker, jobs: Sequence[TaskJob]) -> AsyncIterator[TaskResult]:
        """Run ``worker`` on every job and yield the results in the order they finish."""
        ...


class LocalExecutor:
    """Runs jobs as asyncio tasks in this process, at most ``parallel`` at a time."""

    def __init__(self, parallel: int = 4) -> None:
        if parallel < 1:
            raise ValueError(f"parallel must be at least 1, got {parallel}")
        self.parallel = parallel

    async def map(self, worker: Worker, jobs: Sequence[TaskJob]) -> AsyncIterator[TaskResult]:
        semaphore = asyncio.Semaphore(self.parallel)

        async def one(job: TaskJob) -> TaskResult:
            async with semaphore:
                return await worker(job)

        tasks = [asyncio.ensure_future(one(job)) for job in jobs]
        try:
            for finished in asyncio.as_completed(tasks):
                yield await finished
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    def __repr__(self) -> str:
        return f"LocalExecutor(parallel={self.parallel})"


__all__ = ["Executor", "LocalExecutor", "Worker"]
