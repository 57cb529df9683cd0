"""`raidd serve` commits the watcher's changed paths: the result equals a full rescan."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from tests.serve.conftest import Daemon, wait_for


def listing(daemon: Daemon) -> set[str]:
    return {entry["path"] for entry in daemon.call("ls", {"root": "data"})["entries"]}


def settled(daemon: Daemon) -> dict[str, Any] | None:
    """Return the status once no path is pending and no backup waits, else None."""
    status = daemon.call("status")
    if status["watcher"][0]["pending_paths"] or status["backups"]["roots_waiting"]:
        return None
    return status


def test_watched_changes_equal_full_rescan(make_daemon, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "customers.csv").write_text("id,name\n1,Alfreds\n")
    (data / "many").mkdir()
    for index in range(50):
        (data / "many" / f"order{index}.txt").write_text(f"order {index}\n")
    (data / "gone").mkdir()
    (data / "gone" / "old.txt").write_text("old\n")
    watch = f'path = "{data}"\nexclude = ["*.tmp"]'
    daemon = make_daemon(watch=watch)
    daemon.start()
    first = daemon.call("status")["last_commit"]["id"]

    (data / "customers.csv").write_text("id,name\n1,Alfreds\n2,Ana Trujillo\n")
    (data / "many").rename(data / "archive")
    (data / "new" / "deeper").mkdir(parents=True)
    (data / "new" / "deeper" / "invoice.txt").write_text("invoice\n")
    shutil.rmtree(data / "gone")
    os.link(data / "customers.csv", data / "customers-link.csv")
    (data / "scratch.tmp").write_text("excluded\n")
    expected = {"customers.csv", "customers-link.csv", "new/deeper/invoice.txt"}
    expected |= {f"archive/order{index}.txt" for index in range(50)}

    def committed() -> bool:
        paths = listing(daemon)
        return expected <= paths and not any(p.startswith(("many", "gone")) for p in paths)

    wait_for(committed, what="the changes in the newest commit")
    assert "scratch.tmp" not in listing(daemon)
    status = wait_for(lambda: settled(daemon), what="no pending paths")
    assert status["last_commit"]["id"] > first
    backed_up = [e for e in daemon.events() if e.get("event") == "backup_committed"]
    assert backed_up
    # A full rescan finds nothing that the commits of changed paths missed.
    synced = daemon.call("sync")
    assert synced["changed"] is False
    assert daemon.stop() == 0


def test_event_without_change_commits_nothing(make_daemon, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "notes.txt").write_text("unchanged\n")
    daemon = make_daemon()
    daemon.start()
    before = daemon.call("status")
    events = before["watcher"][0]["events"]
    # Opening for writing and closing without a write raises IN_CLOSE_WRITE.
    with open(data / "notes.txt", "r+b"):
        pass
    wait_for(
        lambda: daemon.call("status")["watcher"][0]["events"] > events, what="the close event"
    )

    def backed_up_nothing() -> bool:
        status = settled(daemon)
        return status is not None and status["backups"]["last_backup"]["commit"] is None

    wait_for(backed_up_nothing, what="a backup that found nothing changed")
    assert daemon.call("status")["last_commit"] == before["last_commit"]
    assert daemon.stop() == 0


def test_burst_of_edits_coalesces(make_daemon, tmp_path: Path) -> None:
    """A hundred files written at once become a few commits, not one each."""
    data = tmp_path / "data"
    data.mkdir()
    daemon = make_daemon()
    daemon.start()
    first = daemon.call("status")["last_commit"]["id"]
    for index in range(100):
        (data / f"burst{index:03}.txt").write_text(f"edit {index}\n")
    expected = {f"burst{index:03}.txt" for index in range(100)}
    wait_for(lambda: expected <= listing(daemon), what="every file of the burst committed")
    status = wait_for(lambda: settled(daemon), what="no pending paths")
    commits = status["last_commit"]["id"] - first
    assert 1 <= commits <= 20
