"""The audit log of one store: pending records, their commit, listing and chain verification.

Records wait in memory (`AuditLog.append`, from any thread) and go out
with the next store commit. `Store.commit` seals every pending record into
one audit object and lists it in the manifest after the earlier ones. It
puts the new chain head into the metadata root. A record is durable once that
commit is. `Store.commit_audit()` commits pending records alone, drawing
on the reserve when the array is full.

The array is the only copy: listing and verification read the audit
objects the manifest lists, so a lost state directory loses no record.
TODO: listing reads every audit object from the newest back until the
limit is reached; a local index would speed up path queries over a long
history, once one is measured to need it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

import crypto
from raidd.array import Reserve
from raidd.errors import IntegrityError
from raidd.store.audit_format import (
    ZERO_LINK,
    AuditObject,
    AuditRecord,
    chain_link,
    decode_object,
    decode_record,
    encode_object,
    encode_record,
    path_hash,
    path_hashes_above,
)
from raidd.store.objects import KIND_AUDIT, MetadataRef
from raidd.store.packing import Packer

if TYPE_CHECKING:
    from raidd.store.store import Store

__all__ = [
    "AuditBatch",
    "AuditLog",
    "ChainReport",
    "list_records",
    "resolve_path",
    "verify_chain",
]

log = structlog.get_logger(__name__)

NS_PER_SECOND = 1_000_000_000
# Pending records kept while commits fail (a failed array). A restore's
# record takes about 900 bytes in memory (measured with tracemalloc), so
# this is about 90 MB. Beyond it new records are dropped, each drop logged.
MAX_PENDING = 100_000
# Records one commit takes at most, so that an audit object stays a few MB.
MAX_BATCH = 10_000


@dataclass(frozen=True)
class AuditBatch:
    """The pending records one commit takes: how many, their first number, the sealed plaintext."""

    count: int
    first: int
    plaintext: bytes
    head: bytes


class AuditLog:
    """The pending audit records of a store, and the keys that hash paths and link records.

    `append` and the pending queries are thread-safe; `prepare` and
    `committed` run on the thread that commits the store.
    """

    def __init__(self, path_key: crypto.SecretKey, chain_key: crypto.SecretKey) -> None:
        self.path_key = path_key
        self.chain_key = chain_key
        self._lock = threading.Lock()
        self._pending: list[AuditRecord] = []
        self._pending_since: float | None = None
        self._next_number: int | None = None
        self.dropped = 0

    def append(self, record: AuditRecord) -> bool:
        """Queue a record for the next commit; return False when it was dropped (queue full)."""
        encode_record(record)  # a record that cannot be encoded fails here, not in a commit
        with self._lock:
            if len(self._pending) >= MAX_PENDING:
                self.dropped += 1
                log.error(
                    "audit_record_dropped",
                    action=record.action,
                    pending=len(self._pending),
                    dropped=self.dropped,
                    reason="no commit succeeded for a long time",
                )
                return False
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.append(record)
        return True

    def pending(self) -> list[AuditRecord]:
        """Return the records not committed yet, oldest first."""
        with self._lock:
            return list(self._pending)

    def pending_since(self) -> float | None:
        """Return when (time.monotonic) the oldest pending record was queued, or None."""
        with self._lock:
            return self._pending_since

    def hash_path(self, root: str, relative: bytes) -> bytes:
        """Return the keyed hash that names `relative` under root `root` in records."""
        return path_hash(self.path_key, root, relative)

    def hashes_above(self, root: str, relative: bytes) -> list[bytes]:
        """Return the hashes of `relative` and of each directory above it, up to the root."""
        return path_hashes_above(self.path_key, root, relative)

    def prepare(self, store: Store) -> AuditBatch | None:
        """Encode and link the pending records (MAX_BATCH at most) for a commit; None if none."""
        with self._lock:
            records = self._pending[:MAX_BATCH]
        if not records:
            return None
        first = self._next(store)
        head = store.root.audit_head if store.root is not None else ZERO_LINK
        previous = head
        encoded = []
        for offset, record in enumerate(records):
            data = encode_record(record)
            head = chain_link(self.chain_key, head, first + offset, data)
            encoded.append(data)
        return AuditBatch(len(records), first, encode_object(first, previous, encoded), head)

    def committed(self, batch: AuditBatch) -> None:
        """Drop the records `batch` took, now that its commit is durable."""
        with self._lock:
            del self._pending[: batch.count]
            self._pending_since = time.monotonic() if self._pending else None
        self._next_number = batch.first + batch.count

    def _next(self, store: Store) -> int:
        """Return the next record number: the end of the newest audit object that opens."""
        if self._next_number is None:
            self._next_number = 0
            for ref in reversed(store.audit_refs()):
                try:
                    found = _open(store, ref)
                except IntegrityError as error:
                    # NOTE: numbers then continue from an older object; verify
                    # reports the unreadable one, and the links stay whole.
                    log.error(
                        "audit_object_unreadable",
                        object_id=ref.object_id.hex()[:16],
                        error=str(error),
                    )
                    continue
                self._next_number = found.first + len(found.records)
                break
        return self._next_number


def resolve_path(path: str, roots: Mapping[str, str]) -> tuple[str, bytes]:
    """Resolve a restore-style PATH to (root name, relative path), as restore selects.

    Args:
        path: a root's name, `NAME/relative/path`, or an absolute path under a root.
        roots: each watched root's name and path.

    Raises:
        UsageError: the path names no root.
    """
    from raidd.store.snapshot import locate_path

    raw = os.fsencode(path)
    first, _, rest = raw.partition(b"/")
    if not raw.startswith(b"/") and os.fsdecode(first) in roots:
        return os.fsdecode(first), rest.strip(b"/")
    absolute = {name: os.fsencode(os.path.abspath(value)) for name, value in roots.items()}
    return locate_path(raw, absolute)


def write_batch(store: Store, batch: AuditBatch, reserve: Reserve) -> MetadataRef:
    """Seal a batch as one audit object in stripes of its own (two copies on RAID0).

    A new audit object shares no stripe with the commit's catalog objects,
    so that damage to one stripe does not cost both. gc may later move it
    into a stripe shared with other live objects.
    """
    packers = [Packer(store.array, reserve=reserve) for _ in range(store.copies)]
    object_id, length, at = store.write_metadata(packers, KIND_AUDIT, batch.plaintext)
    for packer in packers:
        packer.flush()
    return MetadataRef(KIND_AUDIT, object_id, length, tuple(p.resolve() for p in at))


def _open(store: Store, ref: MetadataRef) -> AuditObject:
    where = f"audit object {ref.object_id.hex()[:16]}"
    return decode_object(bytes(store.read_metadata(ref)), where)


def iso_time(time_ns: int) -> str:
    """Format ns since the epoch as UTC ISO 8601 with milliseconds."""
    seconds, rest = divmod(time_ns, NS_PER_SECOND)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{rest // 1_000_000:03d}Z"


def _listed(record: AuditRecord, number: int | None) -> dict[str, Any]:
    return {
        "number": number,
        "committed": number is not None,
        "time": iso_time(record.time_ns),
        **record.to_json(),
    }


def _committed_records(
    store: Store, unreadable: list[str] | None
) -> Iterator[tuple[int, AuditRecord]]:
    """Yield the committed records newest first.

    An object that does not open, or holds a record that does not decode,
    raises, or is skipped and its id appended to `unreadable` when given.
    """
    for ref in reversed(store.audit_refs()):
        where = f"audit object {ref.object_id.hex()[:16]}"
        try:
            found = _open(store, ref)
            records = [
                decode_record(data, f"record {found.first + index} of {where}")
                for index, data in enumerate(found.records)
            ]
        except IntegrityError as error:
            if unreadable is None:
                raise
            log.error("audit_object_skipped", object_id=ref.object_id.hex(), error=str(error))
            unreadable.append(ref.object_id.hex())
            continue
        for index in range(len(records) - 1, -1, -1):
            yield found.first + index, records[index]


def list_records(
    store: Store,
    *,
    path_hashes: set[bytes] | None = None,
    since_ns: int | None = None,
    limit: int | None = None,
    unreadable: list[str] | None = None,
) -> list[dict[str, Any]]:
    """List audit records newest first, pending ones (number None) before committed ones.

    Args:
        path_hashes: keep the records naming at least one of these path hashes.
        since_ns: keep the records made at or after this time.
        limit: return at most this many.
        unreadable: when given, audit objects that do not open are skipped
            and their ids appended here.

    Raises:
        IntegrityError: without `unreadable`, an audit object needed for
            the listing does not open.
    """

    def matches(record: AuditRecord) -> bool:
        if since_ns is not None and record.time_ns < since_ns:
            return False
        return path_hashes is None or not path_hashes.isdisjoint(record.paths)

    found: list[dict[str, Any]] = []
    candidates: Iterator[tuple[int | None, AuditRecord]] = (
        (None, record) for record in reversed(store.audit.pending())
    )
    for number, record in candidates:
        if matches(record):
            found.append(_listed(record, number))
    for committed_number, record in _committed_records(store, unreadable):
        if limit is not None and len(found) >= limit:
            break
        if matches(record):
            found.append(_listed(record, committed_number))
    return found[:limit] if limit is not None else found


@dataclass
class ChainReport:
    """The result of verifying the audit chain; `broken` names the first bad link."""

    objects: int = 0
    records: int = 0
    head: str = ZERO_LINK.hex()
    root_head: str = ZERO_LINK.hex()
    broken: dict[str, Any] | None = None
    pending: int = 0

    @property
    def ok(self) -> bool:
        return self.broken is None

    def to_json(self) -> dict[str, Any]:
        """Return the report as JSON."""
        return {
            "ok": self.ok,
            "objects": self.objects,
            "records": self.records,
            "head": self.head,
            "root_head": self.root_head,
            "broken": self.broken,
            "pending": self.pending,
        }


def verify_chain(store: Store) -> ChainReport:
    """Check that every audit object opens, the links join, and the head is the root's.

    Each of these breaks a link: a record removed, changed, reordered or
    added, an object removed or moved in the manifest's list, a replaced
    head. The report names the first break, oldest first.
    """
    root_head = store.root.audit_head if store.root is not None else ZERO_LINK
    report = ChainReport(root_head=root_head.hex(), pending=len(store.audit.pending()))
    head = ZERO_LINK
    expected = 0
    for position, ref in enumerate(store.audit_refs()):
        object_name = ref.object_id.hex()
        try:
            found = _open(store, ref)
        except IntegrityError as error:
            report.broken = _break(position, object_name, expected, f"does not open: {error}")
            return report
        if found.previous != head:
            reason = (
                "links to a head other than the previous record's: records before it were "
                "removed, changed or reordered"
            )
            report.broken = _break(position, object_name, expected, reason)
            return report
        if found.first != expected:
            reason = f"starts at record {found.first}, expected record {expected}"
            report.broken = _break(position, object_name, expected, reason)
            return report
        for data in found.records:
            try:
                decode_record(data, f"record {expected}")
            except IntegrityError as error:
                report.broken = _break(position, object_name, expected, str(error))
                return report
            head = chain_link(store.audit.chain_key, head, expected, data)
            expected += 1
        report.objects += 1
    report.records = expected
    report.head = head.hex()
    if head != root_head:
        reason = (
            f"the chain ends at {head.hex()[:16]} but the metadata root records "
            f"{root_head.hex()[:16]}: the newest audit objects were removed, or the head replaced"
        )
        report.broken = _break(None, None, expected, reason)
    return report


def _break(
    position: int | None, object_name: str | None, record: int, reason: str
) -> dict[str, Any]:
    return {"position": position, "object": object_name, "record": record, "reason": reason}
