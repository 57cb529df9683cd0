"""A backup that fails on a full array leaves the free space as it was, and gc still runs."""

import json
import os
import time
from pathlib import Path

import pytest

from raidd.errors import ArrayFullError
from raidd.store.audit_format import AuditRecord
from raidd.store.maintenance import check, forget, gc
from raidd.store.pipeline import run_backup
from raidd.store.restore import restore, select
from raidd.store.store import Store
from tests.store.storekit import Setup, describe_tree, make_setup


def test_failed_backup_releases_stripes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fill a small array to the brim without a restart: the failures take nothing."""
    monkeypatch.setenv("RAIDD_LOCK_DIR", str(tmp_path / "lock"))
    setup = make_setup(
        tmp_path / "array",
        level=1,
        members=2,
        size=16 << 20,
        retention="[watch.retention]\nkeep_last = 1\n",
    )
    (setup.data / "small").write_text("kept")
    (setup.data / "medium").write_bytes(os.urandom(4 << 20))
    with Store.open(setup.config()) as store:
        assert run_backup(store).sequence == 1
        (setup.data / "medium").unlink()
        assert run_backup(store).sequence == 2
        free_before = store.array.free_stripe_count()
        assert free_before > store.array.reserve_stripes

        (setup.data / "big").write_bytes(os.urandom(16 << 20))
        for _attempt in range(2):
            with pytest.raises(ArrayFullError) as failure:
                run_backup(store)
            assert store.array.free_stripe_count() == free_before
        message = str(failure.value)
        assert "[watch.retention]" in message
        assert "raidctl forget" in message
        assert "raidctl gc" in message

        (setup.data / "big").unlink()
        assert forget(store).sequence is not None
        collected = gc(store)
        assert collected.freed_stripes
        # Freed stripes become writable two commits later.
        store.array.commit_state()
        store.array.commit_state()
        assert store.array.free_stripe_count() > free_before
        target = tmp_path / "out"
        restore(store, target, select(store, []), 2)
    assert (target / "data" / "small").read_text() == "kept"
    assert not (target / "data" / "medium").exists()


def _fill_to_the_brim(store: Store, data: Path) -> None:
    """Back up new content until even a small file no longer fits; leave `data` as committed."""
    for size in (1 << 20, 64 << 10, 4 << 10):
        number = 0
        while True:
            path = data / f"fill-{size}-{number}"
            path.write_bytes(os.urandom(size))
            try:
                run_backup(store)
            except ArrayFullError:
                path.unlink()
                break
            number += 1
            if size == 1 << 20:
                # The big files are versions of one file, which retention expires.
                path.replace(data / "big")


def _forget_with_keep_last(setup: Setup, keep_last: int) -> int | None:
    """Reopen the store with `keep_last`, forget, then commit audit records until refused."""
    text = setup.config_path.read_text()
    start = text.index("keep_last = ")
    end = text.index("\n", start)
    setup.config_path.write_text(f"{text[:start]}keep_last = {keep_last}{text[end:]}")
    with Store.open(setup.config()) as store:
        try:
            sequence = forget(store).sequence
        except ArrayFullError as error:
            # Forget may use half the reserve only; the message names gc.
            assert "forget itself could not be recorded" in str(error)
            sequence = None
        for _ in range(store.array.reserve_stripes + 1):
            store.audit.append(
                AuditRecord(time.time_ns(), {"kind": "client", "uid": 0, "gid": 0, "pid": 1}, "gc")
            )
            try:
                store.commit_audit()
            except ArrayFullError:
                break
        assert store.array.free_stripe_count() >= store.array.gc_minimum
        return sequence


def test_gc_runs_after_forget_and_audit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On an array full to the brim, forget and audit commits repeated leave gc its room."""
    from raidd.cli import main

    monkeypatch.setenv("RAIDD_LOCK_DIR", str(tmp_path / "lock"))
    setup = make_setup(
        tmp_path / "array",
        level=5,
        members=3,
        size=16 << 20,
        retention="[watch.retention]\nkeep_last = 8\n",
    )
    (setup.data / "small").write_text("kept")
    with Store.open(setup.config()) as store:
        _fill_to_the_brim(store, setup.data)
        array = store.array
        # Backups never write into the reserve.
        assert array.reserve_stripes <= array.free_stripe_count() <= array.reserve_stripes + 6
        newest = store.catalog.last_commit()
        assert newest is not None and newest.sequence > 8
    expected = describe_tree(setup.data)

    forgotten = [_forget_with_keep_last(setup, keep) for keep in (6, 4, 2, 1)]
    # Two forget commits at least fit the half of the reserve that forget may use.
    assert forgotten[0] is not None
    assert forgotten[1] is not None

    assert main(["gc", "--config", str(setup.config_path), "--json"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out[out.index('{\n  "dead_chunks"') :])
    assert result["freed_stripes"] > 0
    with Store.open(setup.config()) as store:
        # Freed stripes become writable two commits later.
        store.array.commit_state()
        store.array.commit_state()
        assert store.array.free_stripe_count() > store.array.reserve_stripes + 100
        sequences = [c.sequence for c in store.snapshots()]
        assert newest.sequence in sequences
        assert newest.sequence - 6 not in sequences
        assert check(store, read_data=True).errors == []
        target = tmp_path / "out"
        restore(store, target, select(store, []), newest.sequence)
        # The array takes backups again.
        (setup.data / "after").write_bytes(os.urandom(1 << 20))
        assert run_backup(store).sequence > newest.sequence
    assert describe_tree(target / "data") == expected
