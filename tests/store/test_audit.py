"""The audit log in the store: record layout, chain, commits, listing, tampering and gc."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

import crypto
from raidd.array import Reserve
from raidd.errors import ArrayFullError, IntegrityError
from raidd.store import audit_format, objects
from raidd.store.audit_format import (
    AuditRecord,
    chain_link,
    decode_object,
    decode_record,
    encode_object,
    encode_record,
)
from raidd.store.maintenance import check, gc
from raidd.store.objects import (
    KIND_AUDIT,
    KIND_DELTA,
    KIND_SEGMENT,
    Manifest,
    MetadataRef,
    Piece,
)
from raidd.store.packing import Packer
from raidd.store.pipeline import run_backup
from raidd.store.store import Store, UnlockKey
from tests.store.storekit import Setup, make_setup

CLIENT = {"kind": "client", "uid": 0, "gid": 0, "pid": 4242}


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    monkeypatch.setenv("RAIDD_LOCK_DIR", str(tmp_path / "lock"))
    return make_setup(tmp_path / "array")


def record(
    action: str, *, time_ns: int = 1_700_000_000_000_000_000, **fields: object
) -> AuditRecord:
    return AuditRecord(time_ns, CLIENT, action, **fields)  # type: ignore[arg-type]


def test_layout_sizes_and_offsets() -> None:
    assert audit_format.AUDIT_HEADER.size == 56
    assert audit_format.RECORD_LENGTH.size == 4
    assert KIND_AUDIT == 5
    assert objects.MANIFEST_VERSION == 2
    data = encode_object(0x0102030405060708, bytes(range(32)), [b"{}", b'{"a":1}'])
    assert data[:4] == b"RDAL"
    assert data[4:6] == bytes((1, 0))
    assert data[6:8] == bytes(2)
    assert data[8:16] == bytes(range(8, 0, -1))
    assert data[16:20] == bytes((2, 0, 0, 0))
    assert data[20:24] == bytes(4)
    assert data[24:56] == bytes(range(32))
    assert data[56:60] == bytes((2, 0, 0, 0))
    assert data[60:62] == b"{}"
    found = decode_object(data, "object")
    assert (found.first, found.previous, found.records) == (
        0x0102030405060708,
        bytes(range(32)),
        (b"{}", b'{"a":1}'),
    )
    with pytest.raises(IntegrityError, match="truncated"):
        decode_object(data[:-1], "object")
    with pytest.raises(IntegrityError, match="trailing"):
        decode_object(data + b"\0", "object")


def test_record_canonical_round_trip() -> None:
    restore_record = record("restore", params={"commit": 3, "at_ns": None}, paths=(b"p" * 32,))
    data = encode_record(restore_record)
    assert data == (
        b'{"action":"restore","actor":{"gid":0,"kind":"client","pid":4242,"uid":0},'
        b'"params":{"at_ns":null,"commit":3},"paths":["' + (b"70" * 32) + b'"],'
        b'"result":{"ok":true},"time_ns":1700000000000000000}'
    )
    assert decode_record(data, "record") == restore_record
    with pytest.raises(IntegrityError, match="keys"):
        decode_record(b'{"action":"x"}', "record")
    with pytest.raises(IntegrityError, match="JSON"):
        decode_record(b"\xff", "record")


def test_chain_link_and_path_hash_vectors() -> None:
    key = crypto.SecretKey.from_buffer(bytes(range(32)))
    import hashlib
    import hmac

    expected = hmac.digest(bytes(range(32)), bytes(32) + bytes(8) + b"{}", hashlib.sha256)
    assert chain_link(key, bytes(32), 0, b"{}") == expected
    name = audit_format.path_hash(key, "data", b"a/b")
    assert name == hmac.digest(bytes(range(32)), b"\x04\x00dataa/b", hashlib.sha256)
    assert audit_format.path_hash(key, "data", b"/a//b/") == name
    above = audit_format.path_hashes_above(key, "data", b"a/b")
    assert above == [
        audit_format.path_hash(key, "data", b""),
        audit_format.path_hash(key, "data", b"a"),
        name,
    ]


def test_records_commit_with_backup(setup: Setup) -> None:
    (setup.data / "file").write_text("one")
    with Store.open(setup.config()) as store:
        store.audit.append(record("sync"))
        store.audit.append(record("restore", paths=(store.audit.hash_path("data", b"file"),)))
        assert [r["committed"] for r in store.audit_records()] == [False, False]
        result = run_backup(store)
        assert result.sequence == 1
        assert store.audit.pending() == []
        assert len(store.audit_refs()) == 1
        assert store.root is not None
        head = store.root.audit_head
        assert head != bytes(32)
    shutil.rmtree(setup.base / "state")
    with Store.open(setup.config(), read_only=True) as store:
        listed = store.audit_records()
        assert [(r["number"], r["action"]) for r in listed] == [(1, "restore"), (0, "sync")]
        assert all(r["committed"] for r in listed)
        report = store.verify_audit()
        assert report.ok, report.broken
        assert (report.objects, report.records) == (1, 2)
        assert report.head == head.hex()


def test_commit_audit_alone_adds_no_segment(setup: Setup) -> None:
    (setup.data / "file").write_text("one")
    with Store.open(setup.config()) as store:
        run_backup(store)
        segments = segment_refs(store)
        sequence = store.manifest.sequence
        assert store.commit_audit() is None
        store.audit.append(record("fail", params={"member": "/dev/loop9"}))
        root = store.commit_audit()
        assert root is not None
        assert segment_refs(store) == segments
        assert store.manifest.sequence == sequence
        store.audit.append(record("scrub"))
        store.commit_audit()
        assert len(store.audit_refs()) == 2
        numbers = [r["number"] for r in store.audit_records()]
        assert numbers == [1, 0]
    with Store.open(setup.config()) as store:
        store.audit.append(record("gc"))
        store.commit_audit()
        assert [r["number"] for r in store.audit_records(limit=2)] == [2, 1]
        assert store.verify_audit().ok


def test_list_filters_by_path_and_time(setup: Setup) -> None:
    with Store.open(setup.config()) as store:
        log = store.audit
        log.append(record("restore", time_ns=10, paths=(log.hash_path("data", b"a/one"),)))
        log.append(record("restore", time_ns=20, paths=(log.hash_path("data", b"b/two"),)))
        log.append(record("sync", time_ns=30, paths=(log.hash_path("data", b""),)))
        store.commit_audit()
        one = set(log.hashes_above("data", b"a/one"))
        assert [r["time_ns"] for r in store.audit_records(path_hashes=one)] == [30, 10]
        exact = {log.hash_path("data", b"b/two")}
        assert [r["time_ns"] for r in store.audit_records(path_hashes=exact)] == [20]
        assert [r["time_ns"] for r in store.audit_records(since_ns=20)] == [30, 20]
        assert [r["time_ns"] for r in store.audit_records(limit=1)] == [30]


def commit_three(store: Store) -> None:
    for action in ("fail", "add", "rebuild"):
        store.audit.append(record(action))
        store.commit_audit()


def rewrite_audit_list(store: Store, refs: list[MetadataRef]) -> None:
    """Commit a manifest with another audit list and the same chain head, as a tamperer would."""
    others = [ref for ref in store.history() if ref.kind != KIND_AUDIT]
    store.commit(None, Packer(store.array, reserve=Reserve.ALL), [], history=[*others, *refs])


def segment_refs(store: Store) -> list[MetadataRef]:
    return [ref for ref in store.history() if ref.kind == KIND_SEGMENT]


@pytest.mark.parametrize(
    ("change", "position", "reason"),
    [
        ("remove_middle", 1, "links to a head"),
        ("remove_first", 0, "links to a head"),
        ("swap", 1, "links to a head"),
        ("remove_last", None, "the chain ends at"),
    ],
)
def test_tampered_list_detected(
    setup: Setup, change: str, position: int | None, reason: str
) -> None:
    with Store.open(setup.config()) as store:
        commit_three(store)
        refs = list(store.audit_refs())
        changed = {
            "remove_middle": [refs[0], refs[2]],
            "remove_first": refs[1:],
            "swap": [refs[0], refs[2], refs[1]],
            "remove_last": refs[:2],
        }[change]
        rewrite_audit_list(store, changed)
    with Store.open(setup.config(), read_only=True) as store:
        report = store.verify_audit()
        assert not report.ok
        assert report.broken is not None
        assert report.broken["position"] == position
        assert reason in report.broken["reason"]
        if position is not None:
            assert report.broken["object"] == changed[position].object_id.hex()
        assert any("audit chain is broken" in error for error in check(store).errors)


def test_replaced_head_detected(setup: Setup) -> None:
    with Store.open(setup.config()) as store:
        commit_three(store)
        assert store.root is not None
        forged = dataclasses.replace(store.root, audit_head=b"\x01" * 32)
        store.array.commit(objects.encode_root(forged))
    with Store.open(setup.config(), read_only=True) as store:
        report = store.verify_audit()
        assert report.broken is not None
        assert report.broken["object"] is None
        assert "metadata root records 0101010101010101" in report.broken["reason"]


def test_audit_object_of_other_kind_rejected(setup: Setup) -> None:
    """An audit reference that points at a catalog delta fails to open: kind is authenticated."""
    (setup.data / "file").write_text("one")
    with Store.open(setup.config()) as store:
        run_backup(store)
        commit_three(store)
        delta = next(r for r in store.history() if r.kind == KIND_DELTA)
        relabelled = MetadataRef(KIND_AUDIT, delta.object_id, delta.length, delta.copies)
        rewrite_audit_list(store, [*store.audit_refs()[:1], relabelled])
        report = store.verify_audit()
        assert report.broken is not None
        assert report.broken["position"] == 1
        assert "does not open" in report.broken["reason"]


def test_gc_moves_audit_objects(setup: Setup) -> None:
    (setup.data / "file").write_bytes(b"x" * 50_000)
    with Store.open(setup.config()) as store:
        run_backup(store)
        commit_three(store)
        (setup.data / "file").unlink()
        run_backup(store)
        before = {ref.object_id: ref.copies for ref in store.audit_refs()}
        result = gc(store)
        assert result.moved_objects >= 3
        after = {ref.object_id: ref.copies for ref in store.audit_refs()}
        assert after.keys() == before.keys()
        assert after != before
        assert store.verify_audit().ok
        assert check(store).errors == []
    with Store.open_members(setup.members, UnlockKey(keyfile=setup.keyfile)) as store:
        assert [r["action"] for r in store.audit_records()] == ["rebuild", "add", "fail"]
        assert store.verify_audit().ok


def test_commit_audit_uses_reserve_when_full(setup: Setup) -> None:
    with Store.open(setup.config()) as store:
        filler = bytes(store.array.stripe_data_size)
        # Full as after a backup's commit: what is left is about the reserve.
        while store.array.free_stripe_count() > store.array.reserve_stripes + 3:
            store.array.write_stripe(filler)
        store.array.commit(store.array.metadata_root)
        assert store.array.free_stripe_count() <= store.array.reserve_stripes + 3
        store.audit.append(record("restore"))
        assert store.commit_audit() is not None
        assert store.audit.pending() == []
        assert store.verify_audit().ok


def test_manifest_version_1_lists_no_audit_objects() -> None:
    delta = MetadataRef(KIND_DELTA, b"d" * 32, 300, ((Piece(1, 0, 300),),))
    audit = MetadataRef(KIND_AUDIT, b"a" * 32, 90, ((Piece(2, 0, 90),),))
    current = objects.encode_manifest(Manifest(4, (delta, audit)))
    assert objects.decode_manifest(current) == Manifest(4, (delta, audit))
    old = bytearray(current)
    old[4:6] = bytes((1, 0))
    with pytest.raises(IntegrityError, match="kind 5"):
        objects.decode_manifest(bytes(old))


def test_pending_queue_bounded(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    from raidd.store import audit

    monkeypatch.setattr(audit, "MAX_PENDING", 2)
    with Store.open(setup.config()) as store:
        assert store.audit.append(record("restore"))
        assert store.audit.append(record("ls"))
        assert not store.audit.append(record("snapshots"))
        assert store.audit.dropped == 1
        store.commit_audit()
        assert store.audit.append(record("snapshots"))
        assert [r["action"] for r in store.audit_records()] == ["snapshots", "ls", "restore"]


def test_batch_size_bounded(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    from raidd.store import audit

    monkeypatch.setattr(audit, "MAX_BATCH", 2)
    with Store.open(setup.config()) as store:
        for action in ("restore", "ls", "snapshots"):
            store.audit.append(record(action))
        store.commit_audit()
        assert [r.action for r in store.audit.pending()] == ["snapshots"]
        store.commit_audit()
        assert store.audit.pending() == []
        assert len(store.audit_refs()) == 2
        assert [r["number"] for r in store.audit_records()] == [2, 1, 0]
        assert store.verify_audit().ok


def test_offline_audit_command(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """`raidd audit` lists and verifies the records of a stopped array from its members."""
    from raidd.cli import main

    with Store.open(setup.config()) as store:
        log = store.audit
        log.append(record("restore", paths=(log.hash_path("data", b"a.csv"),)))
        log.append(record("restore", paths=(log.hash_path("data", b"b.csv"),)))
        store.commit_audit()
    members = [arg for member in setup.members for arg in ("--member", member)]
    key = ["--keyfile", str(setup.keyfile)]
    assert main(["audit", *members, *key, "--verify"]) == 0
    assert "audit chain whole: 2 records in 1 objects" in capsys.readouterr().out
    assert main(["audit", "--config", str(setup.config_path), "--path", "data/a.csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert "#0" in lines[0]
    assert "restore" in lines[0]
    with Store.open(setup.config()) as store:
        rewrite_audit_list(store, [])
    assert main(["audit", *members, *key, "--verify"]) == 3
    assert "the chain ends at" in capsys.readouterr().out


def test_audit_commits_leave_half_the_reserve(setup: Setup) -> None:
    """Audit commits stop at half the reserve, so gc keeps room on a full array."""
    with Store.open(setup.config()) as store:
        array = store.array
        filler = bytes(array.stripe_data_size)
        while array.free_stripe_count() > array.reserve_stripes + 1:
            array.write_stripe(filler, reserve=Reserve.ALL)
        array.commit(array.metadata_root)
        with pytest.raises(ArrayFullError, match="kept for garbage collection"):
            for _ in range(array.reserve_stripes + 1):
                store.audit.append(record("restore"))
                store.commit_audit()
        assert array.free_stripe_count() >= array.reserve_stripes - array.reserve_stripes // 2
        assert len(store.audit.pending()) == 1
