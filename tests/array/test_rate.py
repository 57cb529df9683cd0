"""Rate limits of array jobs: the maximum is kept per member, and progress counts the same."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from raidd.array import Scrub
from raidd.array.jobs import BURST_SECONDS, THROTTLE_SLICE, MiB, RateLimiter
from tests.array.conftest import ImageArray, write_random


class FakeClock:
    """A clock that moves only when the code under test waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float | None = None) -> bool:
        assert seconds is not None and seconds > 0
        self.waits.append(seconds)
        self.now += seconds
        return False


def test_limiter_delay_for_work_done() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    limiter.add(10 * MiB)
    assert limiter.delay() == 0.0  # unlimited
    limiter.set_rate(2.0)
    limiter.add(3 * MiB)
    assert limiter.delay() == pytest.approx(1.5)
    clock.now += 1.0
    assert limiter.delay() == pytest.approx(0.5)
    # A new limit carries the unpaid 1 MiB over (1 s at 1 MiB/s) and counts from its change.
    limiter.set_rate(1.0)
    limiter.add(MiB)
    assert limiter.delay() == pytest.approx(2.0)
    clock.now += 2.0
    limiter.set_rate(0.0)
    limiter.add(100 * MiB)
    assert limiter.delay() == 0.0
    limiter.set_rate(4.0)
    limiter.add(2 * MiB)
    assert limiter.delay() == pytest.approx(0.5)


def test_limiter_idle_time_capped() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    limiter.set_rate(1.0)
    clock.now += 60.0
    limiter.add(5 * MiB)
    assert limiter.delay() == pytest.approx(5.0 - BURST_SECONDS)


@pytest.mark.parametrize("level", [5, 1])
def test_scrub_keeps_the_maximum_per_member(
    make_array: Callable[..., ImageArray], level: int
) -> None:
    """One run's work needs several seconds at the limit: the job waits all of them."""
    image = make_array(level)
    with image.open() as array:
        write_random(array, random.Random(9), 24)
        array.commit(b"r")
        clock = FakeClock()
        max_rate = 0.01
        job = Scrub(array, min_rate=0, max_rate=max_rate, clock=clock)
        job.stop_event.wait = clock.wait  # type: ignore[method-assign]
        stripes = len(job.stripes)
        result = job.run()
        assert result.errors == 0
        per_member = stripes * array.io.strip_size
        assert sum(clock.waits) == pytest.approx(per_member / (max_rate * MiB))
        assert max(clock.waits) <= 0.5
        progress = job.progress()
        assert progress.done == stripes
        assert progress.rate_mib_s == pytest.approx(max_rate)


def test_limited_scrub_reads_small_runs(make_array: Callable[..., ImageArray]) -> None:
    """Under a limit a run contains one throttle slice of work, not one long burst."""
    image = make_array(5)
    with image.open() as array:
        write_random(array, random.Random(11), 24)
        array.commit(b"r")
        clock = FakeClock()
        strip = array.io.strip_size
        max_rate = 2 * strip / (THROTTLE_SLICE * MiB)
        job = Scrub(array, min_rate=0, max_rate=max_rate, clock=clock)
        job.stop_event.wait = clock.wait  # type: ignore[method-assign]
        runs: list[int] = []
        process_run = job.process_run

        def recording(run: list[int]) -> int:
            runs.append(len(run))
            return process_run(run)

        job.process_run = recording  # type: ignore[method-assign]
        result = job.run()
        assert result.errors == 0
        assert job.run_stripes > 2
        assert max(runs) <= 2
        assert sum(runs) == len(job.stripes)
