"""Crash consistency: SIGKILL at random points and simulated power loss."""

from __future__ import annotations

import os
import random
import select
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from raidd.array.faulty import FaultyMember
from tests.array.conftest import ImageArray
from tests.array.workload import Intent, Model, check, committed_step, run_step


def child_loop(image: ImageArray, model: Model, journal: Path, ready: int, seed: int) -> None:
    """Run in the forked child: write and commit until killed."""
    rng = random.Random(seed)
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND)
    array = image.open()
    os.write(ready, b"r")
    while True:
        run_step(array, model, rng, lambda intent: os.write(fd, intent.to_line()))


def recover(image: ImageArray, model: Model, journal: Path) -> None:
    """Assemble after a crash, move the model to the committed step, check every stripe."""
    intents = [Intent.from_line(line) for line in journal.read_text().splitlines() if line]
    with image.open() as array:
        step = committed_step(array)
        for intent in intents:
            if intent.step <= step:
                model.apply(intent)
        assert model.step == step
        assert not array.report.degraded
        check(array, model)
        assert array.scrub(repair=False).errors == 0
    journal.write_text("")


def wait_for_intents(journal: Path, count: int, timeout: float = 30.0) -> None:
    """Wait until the child has recorded `count` intents in the journal."""
    deadline = time.monotonic() + timeout
    while journal.read_bytes().count(b"\n") < count:
        assert time.monotonic() < deadline, f"the child recorded fewer than {count} intents"
        time.sleep(0.001)


def kill_runs(image: ImageArray, runs: int, seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    model = Model()
    journal = tmp_path / "journal"
    journal.write_text("")
    for run in range(runs):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            try:
                child_loop(image, model, journal, write_end, seed * 1000 + run)
            finally:
                os._exit(1)
        os.close(write_end)
        ready, _, _ = select.select([read_end], [], [], 30)
        assert ready, f"run {run}: child did not start"
        os.read(read_end, 1)
        os.close(read_end)
        # The child records each step's intent before committing it, so waiting
        # for n intents means n - 1 commits of this run are done whatever the
        # machine's load; the random delay then lands the kill anywhere in the
        # next step (one commit takes a few milliseconds on these tiny arrays).
        wait_for_intents(journal, 1 + run % 3)
        select.select([], [], [], rng.uniform(0.0, 0.02))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status), f"run {run}: child exited with status {status}"
        recover(image, model, journal)
    assert model.step > runs // 2, "the children committed too little for the kills to matter"


@pytest.mark.parametrize(("level", "runs"), [(5, 20), (6, 15), (1, 8), (10, 7)])
def test_sigkill_at_random_points(
    make_array: Callable[..., ImageArray], tmp_path: Path, level: int, runs: int
) -> None:
    """50 runs in all: after each kill every committed stripe reads back and scrub is clean."""
    image = make_array(level)
    kill_runs(image, runs, seed=level, tmp_path=tmp_path)


@pytest.mark.soak
@pytest.mark.parametrize("level", [0, 1, 5, 6, 10])
def test_sigkill_soak(make_array: Callable[..., ImageArray], tmp_path: Path, level: int) -> None:
    image = make_array(level)
    kill_runs(image, 200, seed=100 + level, tmp_path=tmp_path)


class PowerCut(BaseException):
    """Raised by the fault-injecting members when the simulated power goes."""


def power_loss_run(image: ImageArray, model: Model, seed: int) -> None:
    rng = random.Random(seed)
    members: list[FaultyMember] = []
    budget = [rng.randint(5, 400)]

    class CuttingMember(FaultyMember):
        def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
            budget[0] -= 1
            if budget[0] < 0:
                raise PowerCut
            super().pwrite(data, offset)

    def opener(path: str, writable: bool) -> FaultyMember:
        member = CuttingMember.open(path, writable=writable)
        members.append(member)
        return member

    array = image.open(opener=opener)
    intents: list[Intent] = []
    with pytest.raises(PowerCut):
        while True:
            run_step(array, model, rng, intents.append)
    for member in members:
        member.power_loss(rng)
    array.close()
    with image.open() as array:
        step = committed_step(array)
        assert step in (model.step, model.step + 1)
        if step == model.step + 1:
            model.apply(intents[-1])
        check(array, model)
        assert array.scrub(repair=False).errors == 0


@pytest.mark.parametrize("level", [0, 1, 5, 6, 10])
def test_power_loss(make_array: Callable[..., ImageArray], level: int) -> None:
    """Unsynced writes dropped or torn at a random point: the last commit survives."""
    image = make_array(level)
    model = Model()
    for seed in range(4):
        power_loss_run(image, model, seed * 10 + level)


@pytest.mark.soak
@pytest.mark.parametrize("level", [0, 1, 5, 6, 10])
def test_power_loss_soak(make_array: Callable[..., ImageArray], level: int) -> None:
    image = make_array(level)
    model = Model()
    for seed in range(100):
        power_loss_run(image, model, 1000 + seed * 10 + level)
