"""The daemon's backup service on a real image-file array: batching of changed paths."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from raidd.daemon.backups import BackupService, Ticket, merge_tickets
from raidd.errors import ArrayFullError
from raidd.events import EventHook
from raidd.store.store import Store
from tests.store.storekit import Setup, make_setup


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    monkeypatch.setenv("RAIDD_LOCK_DIR", str(tmp_path / "lock"))
    made = make_setup(tmp_path / "array", size=16 << 20)
    (made.data / "kept.txt").write_text("kept\n")
    return made


@pytest.fixture
def service(setup: Setup) -> Iterator[BackupService]:
    config = setup.config()
    backups = BackupService(lambda: Store.open(config), EventHook(None), behind_after=60)
    try:
        yield backups
    finally:
        backups.stop()


def test_merge_tickets_full_scan_wins() -> None:
    tickets = [
        Ticket({"crm"}, {"crm": {b"a"}}),
        Ticket({"crm", "mail"}, {"crm": {b"b"}, "mail": {b"c"}}),
        Ticket({"mail"}),
    ]
    roots, paths = merge_tickets(tickets)
    assert roots == ["crm", "mail"]
    assert paths == {"crm": {b"a", b"b"}}


def test_changes_during_a_commit_gather_into_one(setup: Setup, service: BackupService) -> None:
    """Tickets queued while the store thread is busy become a single commit."""
    first = service.backup_now()
    assert first.sequence == 1
    busy = threading.Event()
    release = threading.Event()

    def hold(_store: Store) -> None:
        busy.set()
        release.wait(timeout=60)

    holder = threading.Thread(target=service.locked, args=(hold,))
    holder.start()
    assert busy.wait(timeout=60)
    tickets = []
    for index in range(40):
        name = f"burst{index}.txt"
        (setup.data / name).write_text(f"edit {index}\n")
        tickets.append(service.submit({"data"}, {"data": {name.encode(), b""}}))
    release.set()
    holder.join()
    for ticket in tickets:
        assert ticket.done.wait(timeout=60)
        assert ticket.error is None
    sequences = {ticket.result.sequence for ticket in tickets if ticket.result is not None}
    assert sequences == {2}
    assert service.commits == 2
    committed = service.locked(lambda store: set(store.catalog.current("data")))
    assert {f"burst{index}.txt".encode() for index in range(40)} <= committed


def test_unchanged_paths_make_no_commit(setup: Setup, service: BackupService) -> None:
    assert service.backup_now().sequence == 1
    with open(setup.data / "kept.txt", "rb") as handle:
        handle.read()
    ticket = service.submit({"data"}, {"data": {b"kept.txt", b""}})
    assert ticket.done.wait(timeout=60)
    assert ticket.error is None
    assert ticket.result is not None
    assert ticket.result.sequence is None
    assert service.commits == 1
    last = service.last_commit()
    assert last is not None
    assert last["id"] == 1


def test_failed_backup_is_followed_by_full_scan(
    setup: Setup, service: BackupService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The changed paths of a failed backup are lost, so the next backup rescans the root."""
    service.full_retry_after = 0.0
    assert service.backup_now().sequence == 1
    (setup.data / "kept.txt").write_text("edited, and its batch failed\n")
    real_commit = Store.commit

    def failing_commit(*args: object, **kwargs: object) -> None:
        raise ArrayFullError("array crm is full (test)")

    monkeypatch.setattr(Store, "commit", failing_commit)
    failed = service.submit({"data"}, {"data": {b"kept.txt", b""}})
    assert failed.done.wait(timeout=60)
    assert isinstance(failed.error, ArrayFullError)
    monkeypatch.setattr(Store, "commit", real_commit)
    (setup.data / "later.txt").write_text("a later change\n")
    ticket = service.submit({"data"}, {"data": {b"later.txt", b""}})
    assert ticket.done.wait(timeout=60)
    assert ticket.error is None
    assert ticket.result is not None
    assert ticket.result.sequence == 2
    current = service.locked(lambda store: store.catalog.current("data"))
    assert b"later.txt" in current
    assert current[b"kept.txt"].size == len("edited, and its batch failed\n")


def test_full_array_holds_watcher_batches(
    setup: Setup, service: BackupService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After ArrayFullError the watcher's batches wait; a sync runs them at once."""
    assert service.backup_now().sequence == 1
    real_commit = Store.commit

    def failing_commit(*args: object, **kwargs: object) -> None:
        raise ArrayFullError("array crm is full (test)")

    monkeypatch.setattr(Store, "commit", failing_commit)
    (setup.data / "kept.txt").write_text("edited on a full array\n")
    failed = service.submit({"data"}, {"data": {b"kept.txt"}})
    assert failed.done.wait(timeout=60)
    assert isinstance(failed.error, ArrayFullError)
    assert service.behind()
    monkeypatch.setattr(Store, "commit", real_commit)

    waiting = service.submit({"data"}, {"data": {b"kept.txt"}})
    # The store thread runs its work in order: a queued backup would run before this.
    service.locked(lambda _store: None)
    assert not waiting.done.is_set()
    assert service.status()["roots_waiting"] == 1
    synced = service.sync(["data"])
    assert synced["changed"] is True
    assert synced["failed"] == []
    assert waiting.done.wait(timeout=60)
    assert waiting.error is None
    assert not service.behind()


def test_reload_drops_removed_root_error(
    setup: Setup, service: BackupService, tmp_path: Path
) -> None:
    """A failed root that a reload removed no longer keeps the backups behind."""
    config = setup.config()
    assert service.backup_now().sequence == 1
    setup.data.rename(tmp_path / "moved")
    result = service.backup_now()
    assert list(result.failed_roots) == ["data"]
    assert service.behind()
    service.use_config(dataclasses.replace(config, watches=()))
    assert service.status()["failed_roots"] == {}
    assert not service.behind()
