"""Objects that pass their strip checksums but fail authentication are rebuilt, or lost by name."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from raidd.array.codec import strip_checksum
from raidd.store.objects import Piece
from raidd.store.pipeline import run_backup
from raidd.store.restore import restore, select
from raidd.store.store import Store
from tests.store.storekit import Setup, describe_tree, make_setup

STRIP = 16384


@pytest.fixture(autouse=True)
def lock_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAIDD_LOCK_DIR", str(tmp_path / "lock"))


def backed_up(tmp_path: Path, level: int, members: int) -> Setup:
    setup = make_setup(tmp_path / "array", level=level, members=members, strip_size=STRIP)
    (setup.data / "target.bin").write_bytes(os.urandom(150_000))
    (setup.data / "other.bin").write_bytes(os.urandom(40_000))
    (setup.data / "note.txt").write_text("kept apart\n")
    with Store.open(setup.config()) as store:
        assert run_backup(store).problems == []
    return setup


def largest_piece(store: Store, name: bytes) -> Piece:
    """Return the longest piece of the file's first chunk, which covers the most strips."""
    (version,) = [v for v in store.ls("data", 1) if v.path == name]
    entry = store.objects.get(version.chunks[0].chunk_id)
    assert entry is not None
    return max(entry.pieces, key=lambda piece: piece.length)


def strip_roles(store: Store, piece: Piece) -> list[tuple[int, int, int]]:
    """Return (role, start, end) of each data strip the piece covers, in strip coordinates."""
    roles = store.array.codec.data_roles(piece.stripe)
    covered = []
    for index in range(piece.offset // STRIP, (piece.offset + piece.length - 1) // STRIP + 1):
        start = max(piece.offset, index * STRIP) - index * STRIP
        end = min(piece.offset + piece.length, (index + 1) * STRIP) - index * STRIP
        covered.append((roles[index][0], start, end))
    return covered


def corrupt_with_checksum(store: Store, stripe: int, role: int, start: int, end: int) -> bytes:
    """Flip bytes of one strip and record the matching checksum, so the engine trusts it."""
    slot = store.array.slots[role]
    original = store.array.io.read_strip(slot, stripe, 1)
    assert original is not None
    bad = bytearray(original)
    for position in range(start, end, 97):
        bad[position] ^= 0x5A
    assert store.array.io.rewrite_strip(slot, stripe, bytes(bad))
    store.array.record_checksum(stripe, role, strip_checksum(bad))
    store.array.commit_job_changes()
    return original


def strip_on_disk(setup: Setup, store: Store, role: int, stripe: int) -> bytes:
    with open(setup.members[role], "rb") as member:
        member.seek(store.array.io.strip_offset(stripe))
        return member.read(STRIP)


def restore_all(store: Store, target: Path) -> None:
    result = restore(store, target, select(store, []), 1)
    assert result.report.ok
    assert result.lost == []


@pytest.mark.parametrize(
    ("level", "members", "bad_strips"), [(5, 4, 1), (6, 5, 1), (6, 5, 2), (1, 2, 1), (10, 4, 1)]
)
def test_authentication_failure_is_rebuilt(
    tmp_path: Path, level: int, members: int, bad_strips: int
) -> None:
    setup = backed_up(tmp_path, level, members)
    expected = describe_tree(setup.data)
    with Store.open(setup.config()) as store:
        piece = largest_piece(store, b"target.bin")
        if level == 1:
            # Mirrors: the first copy is the one the engine reads.
            covered = [(0, piece.offset, piece.offset + piece.length)]
        else:
            covered = strip_roles(store, piece)
        assert len(covered) >= bad_strips
        originals = {
            role: corrupt_with_checksum(store, piece.stripe, role, start, end)
            for role, start, end in covered[:bad_strips]
        }
    with Store.open(setup.config(), read_only=True) as store:
        report = store.check(read_data=True)
        assert report.errors == []
        assert [n for n in report.notes if "a reconstruction" in n] != []
    # A read-only open counts the bad strips but writes nothing.
    with Store.open(setup.config(), read_only=True) as store:
        restore_all(store, tmp_path / "read-only")
        for role in originals:
            assert store.array.slots[role].counters.checksum == 1
            assert strip_on_disk(setup, store, role, piece.stripe) != originals[role]
    assert describe_tree(tmp_path / "read-only" / "data") == expected
    with Store.open(setup.config()) as store:
        restore_all(store, tmp_path / "writable")
        for role in originals:
            assert store.array.slots[role].counters.checksum == 1
            assert strip_on_disk(setup, store, role, piece.stripe) == originals[role]
        store.array.commit_job_changes()
    assert describe_tree(tmp_path / "writable" / "data") == expected
    # Repaired and recorded: the next open reads the strips as they are, and
    # the counters keep the errors counted before (the superblocks hold them).
    with Store.open(setup.config(), read_only=True) as store:
        restore_all(store, tmp_path / "again")
        counted = [slot.counters.checksum for slot in store.array.slots]
        assert counted == [int(role in originals) for role in range(len(counted))]
        assert store.check(read_data=True).errors == []


def test_wrong_checksum_of_a_good_strip_is_corrected(tmp_path: Path) -> None:
    setup = backed_up(tmp_path, 5, 4)
    with Store.open(setup.config()) as store:
        piece = largest_piece(store, b"target.bin")
        role = strip_roles(store, piece)[0][0]
        good = store.array.map.entries["checksums"][piece.stripe, role]
        store.array.record_checksum(piece.stripe, role, int(good) ^ 1)
        store.array.commit_job_changes()
    with Store.open(setup.config()) as store:
        restore_all(store, tmp_path / "out")
        assert store.array.map.entries["checksums"][piece.stripe, role] == good
        store.array.commit_job_changes()
    with Store.open(setup.config(), read_only=True) as store:
        assert store.check(read_data=True).errors == []
    assert describe_tree(tmp_path / "out" / "data") == describe_tree(setup.data)


def test_beyond_tolerance_file_is_lost_by_name(tmp_path: Path) -> None:
    setup = backed_up(tmp_path, 5, 4)
    with Store.open(setup.config()) as store:
        piece = largest_piece(store, b"target.bin")
        covered = strip_roles(store, piece)
        assert len(covered) >= 2
        for role, start, end in covered[:2]:
            corrupt_with_checksum(store, piece.stripe, role, start, end)
        (version,) = [v for v in store.ls("data", 1) if v.path == b"target.bin"]
        lost_chunk = version.chunks[0].chunk_id.hex()[:16]
    with Store.open(setup.config(), read_only=True) as store:
        errors = store.check(read_data=True).errors
    assert len(errors) == 1
    assert lost_chunk in errors[0]
    command = ["restore", "--config", str(setup.config_path), "--to", str(tmp_path / "out")]
    process = subprocess.run(
        [sys.executable, "-m", "raidd.cli", *command],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        timeout=120,
    )
    assert process.returncode == 3, process.stderr
    assert "'data/target.bin' is lost" in process.stderr
    assert "authenticates" in process.stderr
    restored = tmp_path / "out" / "data"
    assert not (restored / "target.bin").exists()
    assert (restored / "other.bin").read_bytes() == (setup.data / "other.bin").read_bytes()
    assert (restored / "note.txt").read_text() == "kept apart\n"


def test_gc_copies_a_repaired_object(tmp_path: Path) -> None:
    """gc copies objects still sealed, so it rereads them once recovery rewrote the strip."""
    from raidd.store.maintenance import _read_sealed
    from raidd.store.objects import KIND_CHUNK

    setup = backed_up(tmp_path, 5, 4)
    with Store.open(setup.config()) as store:
        (version,) = [v for v in store.ls("data", 1) if v.path == b"target.bin"]
        entry = store.objects.get(version.chunks[0].chunk_id)
        assert entry is not None
        piece = largest_piece(store, b"target.bin")
        role, start, end = strip_roles(store, piece)[0]
        original = corrupt_with_checksum(store, piece.stripe, role, start, end)
        stored = _read_sealed(store, KIND_CHUNK, entry)
        assert store.open_stored(KIND_CHUNK, entry.object_id, stored)
        assert strip_on_disk(setup, store, role, piece.stripe) == original
