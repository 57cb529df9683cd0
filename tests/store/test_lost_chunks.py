"""A chunk in a stripe recorded as lost is stored again by the next backup, not reused."""

import os
import random
import shutil
from pathlib import Path

import pytest

from raidd.errors import IntegrityError
from raidd.store.maintenance import check
from raidd.store.pipeline import run_backup
from raidd.store.restore import restore, select
from raidd.store.store import Store
from tests.store.storekit import make_setup


def _corrupt_strip(store: Store, stripe: int, role: int) -> None:
    """Overwrite one member's strip of `stripe` on disk, behind the engine."""
    array = store.array
    member = array.slots[role].member
    assert member is not None
    garbage = random.Random(stripe * 10 + role).randbytes(array.io.strip_size)
    os.pwrite(member.fd, garbage, array.io.strip_offset(stripe))


def test_lost_chunk_stored_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAIDD_LOCK_DIR", str(tmp_path / "lock"))
    setup = make_setup(tmp_path / "array", level=5, members=3)
    content = b"hello\n"
    (setup.data / "zz.txt").write_bytes(content)
    with Store.open(setup.config()) as store:
        run_backup(store)
        (chunk_id,) = store.catalog.referenced_chunks()
        entry = store.objects.get(chunk_id)
        assert entry is not None
        (piece,) = entry.pieces
        # Both data strips of the stripe: with parity alone it cannot be recovered.
        for role in (0, 1):
            _corrupt_strip(store, piece.stripe, role)
        assert store.array.scrub().lost_stripes == [piece.stripe]
        assert not store.chunk_reusable(chunk_id)

        (setup.data / "zz.txt").unlink()
        (setup.data / "zz.txt").write_bytes(content)
        second = run_backup(store)
        assert second.sequence is not None
        assert second.chunks_new == 1
        assert second.bytes_stored > 0
        moved = store.objects.get(chunk_id)
        assert moved is not None
        assert all(p.stripe != piece.stripe for p in moved.pieces)
        assert store.chunk_reusable(chunk_id)
        assert check(store, read_data=True).errors == []

        with pytest.raises(IntegrityError, match="recorded as lost"):
            store.array.read(piece.stripe, piece.offset, piece.length)
        target = tmp_path / "out"
        result = restore(store, target, select(store, []), second.sequence)
        assert not result.lost
    assert (target / "data" / "zz.txt").read_bytes() == content
    # An index rebuilt from the array points at the new copy as well.
    shutil.rmtree(setup.base / "state")
    with Store.open(setup.config()) as store:
        assert store.objects.get(chunk_id) == moved
