"""A backup that fails on a full array leaves the free space as it was, and gc still runs."""

import os
from pathlib import Path

import pytest

from raidd.errors import ArrayFullError
from raidd.store.maintenance import forget, gc
from raidd.store.pipeline import run_backup
from raidd.store.restore import restore, select
from raidd.store.store import Store
from tests.store.storekit import make_setup


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
