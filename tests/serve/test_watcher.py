"""The watcher: coalescing rules on a fake clock, and real inotify events on a directory."""

from __future__ import annotations

import errno
import time
from pathlib import Path

from raidd.config import WatchConfig, WatcherConfig
from raidd.daemon.watcher import Batch, Coalescer, Watcher
from tests.serve.conftest import wait_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_quiet_period_coalesces_events() -> None:
    clock = FakeClock()
    coalescer = Coalescer(quiet_period=5, max_delay=60, clock=clock)
    coalescer.add("crm", Path("/srv/crm/a"))
    clock.now += 3
    coalescer.add("crm", Path("/srv/crm/a"))
    clock.now += 3
    assert coalescer.take_due() == []
    clock.now += 2
    (batch,) = coalescer.take_due()
    assert batch.root == "crm"
    assert batch.paths == {Path("/srv/crm/a")}
    assert batch.rescan is False
    assert coalescer.take_due() == []


def test_max_delay_flushes_busy_file() -> None:
    clock = FakeClock()
    coalescer = Coalescer(quiet_period=5, max_delay=20, clock=clock)
    for _ in range(10):
        coalescer.add("crm", Path("/srv/crm/busy.db"))
        clock.now += 2.5
    (batch,) = coalescer.take_due()
    assert batch.paths == {Path("/srv/crm/busy.db")}


def test_rescan_takes_every_pending_path() -> None:
    clock = FakeClock()
    coalescer = Coalescer(quiet_period=5, max_delay=20, clock=clock)
    coalescer.add("crm", Path("/srv/crm/new"))
    coalescer.request_rescan("crm")
    (batch,) = coalescer.take_due()
    assert batch.rescan is True
    assert batch.paths == {Path("/srv/crm/new")}
    assert coalescer.pending_count("crm") == 0


def _watcher(root: Path, **timing: float) -> Watcher:
    settings = {"quiet_period": 0.1, "max_delay": 1.0, "rescan_interval": 3600.0, **timing}
    return Watcher([WatchConfig(path=root, name="crm")], WatcherConfig(**settings))


def test_changes_become_batches(tmp_path: Path) -> None:
    watcher = _watcher(tmp_path)
    watcher.start()
    try:
        assert watcher.due_batches() == []
        (tmp_path / "orders.csv").write_text("1,2\n")
        (tmp_path / "old.txt").write_text("x")
        (tmp_path / "old.txt").rename(tmp_path / "new.txt")
        (tmp_path / "orders.csv").unlink()
        seen: set[Path] = set()

        def collected() -> bool:
            for batch in watcher.due_batches():
                seen.update(batch.paths)
            return {tmp_path / "orders.csv", tmp_path / "old.txt", tmp_path / "new.txt"} <= seen

        wait_for(collected, what="created, renamed and deleted paths in batches")
        time.sleep(0.3)
        assert watcher.due_batches() == []
        assert watcher.status()[0]["events"] >= 4
    finally:
        watcher.stop()


class LimitedObserver:
    """An observer whose every watch fails as at the inotify watch limit."""

    def start(self) -> None:
        return

    def schedule(self, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "inotify watch limit reached")

    def unschedule(self, watch: object) -> None:
        raise KeyError(watch)

    def stop(self) -> None:
        return

    def join(self) -> None:
        return


def test_watch_limit_is_reported_and_rescanned(tmp_path: Path) -> None:
    clock = FakeClock()
    watcher = Watcher(
        [WatchConfig(path=tmp_path, name="crm")],
        WatcherConfig(quiet_period=1, max_delay=10, rescan_interval=60),
        clock=clock,
        observer_factory=LimitedObserver,  # type: ignore[arg-type]
    )
    watcher.start()
    (row,) = watcher.status()
    assert row["watching"] is False
    assert "fs.inotify.max_user_watches" in row["error"]
    assert watcher.due_batches() == []
    clock.now += 61
    (batch,) = watcher.due_batches()
    assert batch.rescan is True
    watcher.stop()


def test_seconds_until_due_follows_both_rules() -> None:
    clock = FakeClock()
    coalescer = Coalescer(quiet_period=5, max_delay=20, clock=clock)
    assert coalescer.seconds_until_due() is None
    assert coalescer.add("crm", Path("/srv/crm/a")) is True
    assert coalescer.add("crm", Path("/srv/crm/b")) is False
    assert coalescer.seconds_until_due() == 5
    for _ in range(8):
        clock.now += 2
        coalescer.add("crm", Path("/srv/crm/a"))
        coalescer.add("crm", Path("/srv/crm/b"))
    # Both paths were first seen 16 s ago: the maximum delay ends in 4 s.
    assert coalescer.seconds_until_due() == 4
    clock.now += 4
    assert coalescer.seconds_until_due() == 0
    (batch,) = coalescer.take_due()
    assert batch.paths == {Path("/srv/crm/a"), Path("/srv/crm/b")}
    assert coalescer.seconds_until_due() is None
    coalescer.request_rescan("crm")
    assert coalescer.seconds_until_due() == 0
    assert coalescer.add("crm", Path("/srv/crm/c")) is False


def test_relative_paths_of_batch(tmp_path: Path) -> None:
    watcher = _watcher(tmp_path / "crm")
    batch = Batch(
        "crm",
        {tmp_path / "crm", tmp_path / "crm" / "a.txt", tmp_path / "crm/docs/b", tmp_path / "x"},
    )
    assert watcher.relative_paths(batch) == {b"", b"a.txt", b"docs/b"}
    assert watcher.relative_paths(Batch("gone", {tmp_path / "crm"})) == set()


def test_first_event_wakes_main_loop(tmp_path: Path) -> None:
    woken: list[int] = []
    watcher = Watcher(
        [WatchConfig(path=tmp_path, name="crm")],
        WatcherConfig(quiet_period=5, max_delay=10, rescan_interval=3600),
        on_pending=lambda: woken.append(1),
    )
    watcher.start()
    try:
        (tmp_path / "one.txt").write_text("1")
        wait_for(lambda: watcher.coalescer.pending_count("crm") > 0, what="a pending path")
        (tmp_path / "two.txt").write_text("2")
        wait_for(lambda: watcher.coalescer.pending_count("crm") >= 3, what="more pending paths")
        assert woken == [1]
        due = watcher.seconds_until_due()
        assert due is not None
        assert 0 < due <= 5
    finally:
        watcher.stop()
