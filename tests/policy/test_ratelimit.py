"""The per-session rate limit: a token bucket, refused or waited for, on a controlled clock."""

from __future__ import annotations

import asyncio

import pytest

from loopwright.policy import Policy, RateLimit

from .conftest import RegistryFactory, text


class Clock:
    """A monotonic clock the test moves by hand; ``sleep`` advances it instead of waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def test_over_the_limit_the_model_is_told_to_slow_down(
    make_registry: RegistryFactory,
) -> None:
    clock = Clock()
    registry = make_registry(Policy(rate_limit=RateLimit(3, per=60, clock=clock)))
    for i in range(3):  # a burst of up to `calls` goes through
        assert (await registry.execute("echo", {"text": str(i)}))["content"] == str(i)
    refused = await registry.execute("echo", {"text": "3"})
    assert refused["is_error"] is True
    assert text(refused) == (
        "Rate limit reached: this session allows 3 tool calls per 60s, so this call was not "
        "run. Slow down: wait about 20.0s before the next tool call, and do more per call "
        "instead of many small calls."
    )
    clock.now += 20  # one call's worth refills
    assert (await registry.execute("echo", {"text": "4"}))["is_error"] is False
    assert (await registry.execute("echo", {"text": "5"}))["is_error"] is True


async def test_refused_calls_do_not_use_up_the_allowance(make_registry: RegistryFactory) -> None:
    clock = Clock()
    registry = make_registry(Policy(rate_limit=RateLimit(1, per=10, clock=clock)))
    await registry.execute("echo", {"text": "a"})
    for _ in range(5):
        assert (await registry.execute("echo", {"text": "b"}))["is_error"] is True
    clock.now += 10
    assert (await registry.execute("echo", {"text": "c"}))["is_error"] is False


async def test_every_call_counts_even_an_invalid_one(make_registry: RegistryFactory) -> None:
    registry = make_registry(Policy(rate_limit=RateLimit(2, per=60, clock=Clock())))
    await registry.execute("Nope", {})
    await registry.execute("echo", {"wrong": 1})
    assert "Rate limit reached" in text(await registry.execute("echo", {"text": "x"}))


async def test_each_session_has_its_own_bucket(make_registry: RegistryFactory) -> None:
    policy = Policy(rate_limit=RateLimit(1, per=60, clock=Clock()))
    first, second = make_registry(policy), make_registry(policy)
    assert (await first.execute("echo", {"text": "a"}))["is_error"] is False
    assert (await first.execute("echo", {"text": "b"}))["is_error"] is True
    assert (await second.execute("echo", {"text": "c"}))["is_error"] is False


async def test_wait_mode_delays_calls_in_order(make_registry: RegistryFactory) -> None:
    clock = Clock()
    limit = RateLimit(2, per=10, on_limit="wait", clock=clock, sleep=clock.sleep)
    registry = make_registry(Policy(rate_limit=limit))
    results = [await registry.execute("echo", {"text": str(i)}) for i in range(4)]
    assert [r["content"] for r in results] == ["0", "1", "2", "3"]
    assert clock.slept == [pytest.approx(5.0), pytest.approx(5.0)]


async def test_wait_mode_refuses_a_wait_longer_than_max_wait(
    make_registry: RegistryFactory,
) -> None:
    clock = Clock()
    limit = RateLimit(1, per=600, on_limit="wait", max_wait=30, clock=clock, sleep=clock.sleep)
    registry = make_registry(Policy(rate_limit=limit))
    await registry.execute("echo", {"text": "a"})
    refused = await registry.execute("echo", {"text": "b"})
    assert "wait about 600.0s" in text(refused)
    assert clock.slept == []


async def test_a_cancelled_waiter_gives_its_turn_back() -> None:
    clock = Clock()
    started = asyncio.Event()

    async def stuck(seconds: float) -> None:
        started.set()
        await asyncio.Event().wait()

    bucket = RateLimit(1, per=10, on_limit="wait", clock=clock, sleep=stuck).bucket()
    assert await bucket.acquire() is None
    waiter = asyncio.create_task(bucket.acquire())
    await started.wait()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    clock.now += 10
    assert bucket.available == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"calls": 0}, "calls must be a positive integer"),
        ({"calls": 2.5}, "calls must be a positive integer"),
        ({"calls": 5, "per": 0}, "per must be a positive number of seconds"),
        ({"calls": 5, "on_limit": "drop"}, "on_limit must be 'error' or 'wait'"),
        ({"calls": 5, "max_wait": -1}, "max_wait must be zero or more seconds"),
    ],
)
def test_bad_limits_are_clear_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RateLimit(**kwargs)  # type: ignore[arg-type]
