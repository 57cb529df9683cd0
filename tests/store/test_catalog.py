"""The catalog index: monotonic commits, state at a time, deletions, forget, rebuild."""

import sqlite3
from pathlib import Path

import pytest

from raidd.errors import IntegrityError
from raidd.store.catalog import CatalogIndex
from raidd.store.catalog_format import (
    ChunkEntry,
    CommitDelta,
    Deletion,
    Forget,
    Version,
    decode_delta,
    encode_delta,
)
from raidd.store.scan import EntryType

SECOND = 1_000_000_000


def file_version(path: bytes, marker: int, root: str = "crm") -> Version:
    chunk = ChunkEntry(0, 10, bytes([marker]) * 32)
    return Version(root, path, EntryType.FILE, 0o644, 0, 0, marker, size=10, chunks=(chunk,))


def commit(
    index: CatalogIndex, now: int, *records: Version | Deletion, roots=("crm",)
) -> CommitDelta:
    delta = index.next_commit(roots, now_ns=now * SECOND)
    delta = CommitDelta(delta.sequence, delta.parent, delta.time_ns, delta.roots, records)
    index.apply(delta)
    return delta


def paths(index: CatalogIndex, root: str, sequence: int) -> dict[bytes, int]:
    return {version.path: version.mtime_ns for version in index.state(root, sequence)}


@pytest.fixture
def index() -> CatalogIndex:
    with CatalogIndex(":memory:") as catalog:
        yield catalog


def test_sequences_and_parents(index: CatalogIndex) -> None:
    first = commit(index, 100, file_version(b"a", 1))
    second = commit(index, 200, file_version(b"b", 2))
    assert (first.sequence, first.parent) == (1, 0)
    assert (second.sequence, second.parent) == (2, 1)
    assert index.last_commit().sequence == 2


def test_clock_set_back_keeps_order(index: CatalogIndex) -> None:
    commit(index, 1000, file_version(b"a", 1))
    behind = commit(index, 10, file_version(b"a", 2))
    assert behind.time_ns == 1000 * SECOND + 1
    again = commit(index, 10, file_version(b"a", 3))
    assert again.time_ns == 1000 * SECOND + 2
    times = [info.time_ns for info in reversed(index.commits())]
    assert times == sorted(times)
    assert len(set(times)) == 3


def test_out_of_order_delta_rejected(index: CatalogIndex) -> None:
    commit(index, 100, file_version(b"a", 1))
    with pytest.raises(IntegrityError, match="does not follow commit 1"):
        index.apply(CommitDelta(1, 0, 200 * SECOND, ("crm",)))
    with pytest.raises(IntegrityError, match="does not follow"):
        index.apply(CommitDelta(2, 1, 50 * SECOND, ("crm",)))


def test_record_for_unlisted_root_rejected(index: CatalogIndex) -> None:
    delta = CommitDelta(1, 0, SECOND, ("crm",), (file_version(b"a", 1, root="other"),))
    with pytest.raises(IntegrityError, match="root 'other', which it does not list"):
        index.apply(delta)
    assert index.last_commit() is None
    assert index.current("other") == {}


def test_state_at_times(index: CatalogIndex) -> None:
    commit(index, 100, file_version(b"a", 1), file_version(b"b", 1))
    commit(index, 200, file_version(b"a", 2))
    commit(index, 300, Deletion("crm", b"b"), file_version(b"c", 3))
    commit(index, 400, file_version(b"b", 4))
    state = {}
    for moment in (50, 100, 150, 200, 299, 300, 400, 10_000):
        state[moment] = {v.path: v.mtime_ns for v in index.state_at("crm", moment * SECOND)}
    assert state[50] == {}
    assert state[100] == {b"a": 1, b"b": 1}
    assert state[150] == state[100]
    assert state[200] == {b"a": 2, b"b": 1}
    assert state[299] == state[200]
    assert state[300] == {b"a": 2, b"c": 3}
    assert state[400] == {b"a": 2, b"b": 4, b"c": 3}
    assert state[10_000] == state[400]


def test_roots_are_separate(index: CatalogIndex) -> None:
    commit(
        index,
        100,
        file_version(b"a", 1),
        file_version(b"a", 9, root="exports"),
        roots=("crm", "exports"),
    )
    commit(index, 200, Deletion("exports", b"a"), roots=("exports",))
    assert paths(index, "crm", 2) == {b"a": 1}
    assert paths(index, "exports", 2) == {}
    assert paths(index, "exports", 1) == {b"a": 9}
    assert [c.sequence for c in index.commits(root="crm")] == [1]
    assert [c.sequence for c in index.commits(root="exports")] == [2, 1]


def test_commit_listing_filters(index: CatalogIndex) -> None:
    for moment in range(1, 6):
        commit(index, moment * 100, file_version(b"a", moment))
    assert [c.sequence for c in index.commits(limit=2)] == [5, 4]
    assert [c.sequence for c in index.commits(since_ns=300 * SECOND)] == [5, 4, 3]
    assert index.commit(3).time_ns == 300 * SECOND
    assert index.commit(99) is None
    assert index.commit_at(250 * SECOND).sequence == 2


def test_current_and_history(index: CatalogIndex) -> None:
    commit(index, 100, file_version(b"a\nb\xff", 1))
    commit(index, 200, file_version(b"a\nb\xff", 2))
    current = index.current("crm")
    assert list(current) == [b"a\nb\xff"]
    assert current[b"a\nb\xff"].mtime_ns == 2
    history = index.history("crm", b"a\nb\xff")
    assert [(first, last, v.mtime_ns) for first, last, v in history] == [(1, 2, 1), (2, None, 2)]


def test_version_fields_round_trip(index: CatalogIndex) -> None:
    version = Version(
        "crm",
        b"db/crm.db",
        EntryType.FILE,
        0o4750,
        1000,
        1001,
        123,
        size=5 << 20,
        chunks=(ChunkEntry(0, 1 << 20, b"\x01" * 32), ChunkEntry(4 << 20, 1 << 20, b"\x02" * 32)),
        extents=((0, 1 << 20), (4 << 20, 1 << 20)),
        hard_link_group=77,
        xattrs=((b"user.a", b""), (b"system.posix_acl_access", b"\x02\x00\x00\x00")),
        changed_during_read=True,
        sqlite_copy=True,
        ctime_ns=456,
        inode=(1 << 63) + 1,
    )
    link = Version("crm", b"link", EntryType.SYMLINK, 0o777, 0, 0, 5, link_target=b"db/crm.db")
    commit(index, 100, version, link)
    stored = index.current("crm")
    assert stored[b"db/crm.db"] == version
    assert stored[b"link"] == link


def test_forget_keeps_what_kept_commits_see(index: CatalogIndex) -> None:
    commit(index, 100, file_version(b"a", 1), file_version(b"b", 1))
    commit(index, 200, file_version(b"a", 2))
    commit(index, 300, file_version(b"a", 3))
    dropped = index.forget("crm", [1, 2])
    assert dropped == 2
    assert paths(index, "crm", 3) == {b"a": 3, b"b": 1}
    assert [c.sequence for c in index.commits()] == [3]
    assert index.referenced_chunks() == {b"\x01" * 32, b"\x03" * 32}


def test_forget_newest_rejected(index: CatalogIndex) -> None:
    commit(index, 100, file_version(b"a", 1))
    commit(index, 200, file_version(b"a", 2))
    with pytest.raises(IntegrityError, match="commit 2 is the newest commit of root 'crm'"):
        index.forget("crm", [2])


def test_forget_shared_commit_stays_for_other_root(index: CatalogIndex) -> None:
    commit(
        index,
        100,
        file_version(b"a", 1),
        file_version(b"x", 1, "exports"),
        roots=("crm", "exports"),
    )
    commit(index, 200, file_version(b"a", 2))
    index.forget("crm", [1])
    assert index.commit(1) is not None
    assert paths(index, "exports", 1) == {b"x": 1}
    assert [c.sequence for c in index.commits(root="crm")] == [2]


def test_sequence_not_reused_after_forget(index: CatalogIndex) -> None:
    commit(index, 100, file_version(b"a", 1), roots=("crm",))
    commit(index, 200, file_version(b"x", 2, "exports"), roots=("exports",))
    index.forget("crm", [])
    with pytest.raises(IntegrityError):
        index.forget("exports", [2])
    commit(index, 300, file_version(b"x", 3, "exports"), roots=("exports",))
    index.forget("exports", [2])
    nxt = index.next_commit(["crm"], now_ns=0)
    assert nxt.sequence == 4
    assert nxt.time_ns == 300 * SECOND + 1


def test_rebuild_from_deltas(tmp_path: Path) -> None:
    """Encoded deltas applied to a fresh index give the same states (the index is a cache)."""
    encoded = []
    with CatalogIndex(tmp_path / "index.sqlite") as original:
        for moment, records in enumerate(
            [
                (file_version(b"a", 1), file_version(b"b", 1)),
                (file_version(b"a", 2), Deletion("crm", b"b")),
                (file_version(b"\xff", 3),),
            ],
            start=1,
        ):
            encoded.append(encode_delta(commit(original, moment * 100, *records)))
        expected = [list(original.state("crm", sequence)) for sequence in (1, 2, 3)]
    with CatalogIndex(tmp_path / "rebuilt.sqlite") as rebuilt:
        for data in encoded:
            rebuilt.apply(decode_delta(data))
        assert [list(rebuilt.state("crm", sequence)) for sequence in (1, 2, 3)] == expected


def test_index_persists(tmp_path: Path) -> None:
    with CatalogIndex(tmp_path / "index.sqlite") as catalog:
        commit(catalog, 100, file_version(b"a", 1))
    with CatalogIndex(tmp_path / "index.sqlite") as catalog:
        assert paths(catalog, "crm", 1) == {b"a": 1}


def test_other_schema_version_rejected(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    CatalogIndex(path).close()
    connection = sqlite3.connect(path)
    connection.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    connection.commit()
    connection.close()
    with pytest.raises(IntegrityError, match="schema version 99, this raidd uses 1: delete"):
        CatalogIndex(path)


def test_forget_record_applies_and_rebuilds(tmp_path: Path) -> None:
    """A Forget record in a commit forgets the same commits in a rebuilt index."""
    encoded = []
    with CatalogIndex(":memory:") as index:
        for moment in (1, 2, 3):
            encoded.append(encode_delta(commit(index, moment * 100, file_version(b"a", moment))))
        encoded.append(encode_delta(commit(index, 400, Forget("crm", (1, 2)))))
        assert [c.sequence for c in index.commits(root="crm")] == [3]
        assert index.referenced_chunks() == {b"\x03" * 32}
        assert index.next_commit(["crm"], now_ns=0).sequence == 5
    with CatalogIndex(":memory:") as rebuilt:
        for data in encoded:
            rebuilt.apply(decode_delta(data))
        assert [c.sequence for c in rebuilt.commits(root="crm")] == [3]
        assert paths(rebuilt, "crm", 3) == {b"a": 3}


def test_forget_record_of_newest_rejected(index: CatalogIndex) -> None:
    commit(index, 100, file_version(b"a", 1))
    with pytest.raises(IntegrityError, match="newest commit of root 'crm'"):
        commit(index, 200, Forget("crm", (1,)))
    assert [c.sequence for c in index.commits()] == [1]
