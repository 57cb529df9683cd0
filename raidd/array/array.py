"""The Array: one assembled array of members, its allocation map and its commits."""

from __future__ import annotations

import copy
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from parity import Geometry
from raidd.array.allocmap import (
    FLAG_DATA,
    FLAG_FREED,
    FLAG_MAP,
    AllocationMap,
    MapShape,
    node_checksum,
)
from raidd.array.codec import StripeCodec
from raidd.array.lock import ArrayLock
from raidd.array.mapwrite import MapWriter
from raidd.array.reserve import Reserve, forget_room, gc_minimum, kept_back
from raidd.array.stripeio import Slot, StripeIO
from raidd.array.superblock import (
    FORMAT_VERSION,
    NO_COPY,
    Checkpoint,
    MapPointer,
    MemberEntry,
    MemberState,
    PendingStripe,
    Superblock,
    write_superblock,
)
from raidd.errors import ArrayError, ArrayFullError, IntegrityError, MemberError

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CommitResult:
    """The outcome of a commit: its event counter, and the stripe that holds the tail."""

    event: int
    tail_stripe: int | None


@dataclass
class Spare:
    member_uuid: uuid.UUID
    path: str
    member: Any


@dataclass
class AssemblyReport:
    """Assembly findings besides the members used; each item names path, UUID and reason."""

    degraded: bool = False
    missing_roles: list[int] = field(default_factory=list)
    stale: list[dict[str, str]] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)
    rolled_forward: list[str] = field(default_factory=list)
    # Members marked failed that a forced assembly took back.
    forced: list[str] = field(default_factory=list)
    # Invalid superblock copies by member UUID: {copy slot: why}, until a commit rewrites them.
    invalid_copies: dict[str, dict[str, str]] = field(default_factory=dict)


class Array(MapWriter):
    """An assembled array: a crash-consistent space of stripes on redundant members.

    The unit of writing is the stripe: `stripe_data_size` bytes of the
    caller's data plus parity, one strip on every member. The engine never
    rewrites a stripe that a commit references (copy-on-write), so a crash
    or power loss at any point leaves the last commit readable and there is
    no RAID5 write hole.

    The backup store uses it this way:

    1. `write_stripe(data)` packs up to `stripe_data_size` bytes (zero
       padded) into a free stripe and returns its number. Consecutive
       stripes are queued and written to every present member together, at
       the latest by the next read, `flush` or commit. The stripe is not yet
       referenced: after a crash before the next commit it is free again.
    2. `commit(metadata_root, freed=..., tail=...)` makes every stripe
       written since the last commit durable, together with the changed
       parts of the allocation map, and then writes the superblock with the
       next event counter on every member. `metadata_root` (at most 256
       bytes) is the store's own root reference, kept in the superblock and
       returned by `metadata_root` after assembly. `tail` is a partial
       stripe of the store's data (its metadata, say). The engine packs it
       together with the map nodes into one stripe, so a small commit costs
       one stripe (two on RAID0, which writes the map nodes twice). The
       result names that stripe, and the tail starts at its offset 0.
    3. `read(stripe, offset, length)` returns bytes of a stripe's data. Every
       strip is checked against the checksum in the allocation map; a
       missing member, a read error or a mismatch is repaired from parity,
       the bad strip is rewritten and counted against its member. Beyond the
       tolerance the read raises IntegrityError; it never returns guesses.
    4. `free(stripes)` (or `commit(freed=...)`) releases stripes. A stripe
       freed by commit N is written again only by commit N + 2 or later, so
       that the previous superblock slot still finds its data intact.

    A write error fails the member: the array goes on degraded, and the
    next commit records the failure in every member table. When free
    stripes drop to the reserve kept for garbage collection, `write_stripe`
    raises ArrayFullError unless the writer's share allows it
    (raidd.array.reserve: backups none, forget and audit at most half,
    gc all);
    reads go on.

    Thread safety: every public method takes the array's lock, so a daemon
    may call it from several threads; rebuild and scrub jobs take it once
    per run of stripes.

    Commits and their owner: the caller that writes and frees stripes (the
    store) owns `commit`, which records everything it wrote and freed since
    its last commit. Jobs and administration never call `commit`; they call
    `commit_state` (superblocks only: member states, checkpoint, keyslots)
    or `commit_job_changes` (also the map rows they changed, such as lost
    marks). Both run under the array lock between the owner's calls, and
    neither records the owner's uncommitted stripes or frees: map nodes
    they write carry those rows as last committed, and the metadata root
    stays the committed one. So a crash after a job's commit and before the
    owner's loses none of the owner's committed data, and references no
    stripe the owner's metadata does not know.

    Long work runs as jobs (`raidd.array.jobs`): `Rebuild` (also resync of a
    returning member) and `Scrub`, each with progress, rate limits and a
    checkpoint in the superblocks; `resume_job` picks one up after a
    restart. `failure_listeners` are called when a member fails;
    `AutoRebuild` uses them to rebuild onto a spare.

    Create arrays with `raidd.array.create_array`, open them with
    `raidd.array.assemble`.
    """

    def __init__(
        self,
        newest: Superblock,
        slots: list[Slot],
        spares: list[Spare],
        *,
        lock: ArrayLock | None,
        read_only: bool,
        report: AssemblyReport,
    ) -> None:
        self.uuid = newest.array_uuid
        self.name = newest.array_name
        self.read_only = read_only
        self.report = report
        self._template = newest
        self._table = [copy.copy(entry) for entry in newest.members]
        self.geometry = Geometry(newest.level, newest.member_count, newest.strip_size)
        self.codec = StripeCodec(self.geometry)
        self.stripe_count = newest.stripe_count
        self.stripe_data_size = self.geometry.stripe_data_size
        self.reserve_stripes = newest.reserve_stripes
        self.event = newest.event_counter
        self.metadata_root = newest.metadata_root
        self.keyslot_area = newest.keyslot_area
        self.checkpoint = copy.copy(newest.checkpoint)
        self.spares = spares
        self._lock_file = lock
        self._lock = threading.RLock()
        self._closed = False
        self._broken: str | None = None
        self._uncommitted: set[int] = set()
        # The smallest gc commit and a forget commit, computed on first use.
        self._bounds: tuple[int, int] | None = None
        self._map_changed = False
        # Map rows as last committed, of the stripes the owner wrote or freed since.
        self._owner_rows: dict[int, np.void] = {}
        self._job_map_changed = False
        self._state_changed = False
        # Error counts as the superblocks last recorded them (they are written with each commit).
        self._counters_written = [slot.counters.as_tuple() for slot in slots]
        self._cursor = 0
        self._free_cache: np.ndarray | None = None
        self._free_position = 0
        self._pending = list(newest.pending)
        self._root = newest.map_root
        self.last_foreground_io = 0.0
        self.failure_listeners: list[Callable[[Slot, str], None]] = []
        self.io = StripeIO(
            self.codec,
            slots,
            newest.data_offset,
            self._member_failed,
            read_only,
            on_flushed=self._record_checksums,
        )
        shape = MapShape(newest.map_entries_per_leaf, newest.map_fanout, newest.map_depth)
        self.map = AllocationMap(newest.stripe_count, newest.member_count, shape)

    # -- properties ------------------------------------------------------------------

    @property
    def slots(self) -> list[Slot]:
        return self.io.slots

    @property
    def level(self) -> int:
        return int(self.geometry.level)

    @property
    def degraded(self) -> bool:
        return any(slot.state is not MemberState.ACTIVE for slot in self.slots)

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def load_map(self) -> None:
        """Read the allocation map from the members (called once by assembly)."""
        self.map.load(self._root, self._pending, self._read_node, self._read_list)
        self._cursor = 0

    def _read_list(self, record: PendingStripe) -> bytes:
        indices = list(range(self.geometry.data_strips))
        strips = self.io.read_verified(
            record.stripe, record.written_at, record.checksums, 0, indices
        )
        return b"".join(strips[i] for i in indices)

    def _read_node(self, pointer: MapPointer) -> bytes:
        def matches(data: bytes) -> bool:
            return node_checksum(data) == pointer.checksum

        try:
            return self.io.read_unverified_range(
                pointer.stripe, pointer.offset, pointer.length, matches
            )
        except IntegrityError as error:
            if pointer.copy_stripe == NO_COPY:
                raise
            log.warning(
                "map_node_copy_used",
                array=str(self.uuid),
                stripe=pointer.stripe,
                copy_stripe=pointer.copy_stripe,
                error=str(error),
            )
            return self.io.read_unverified_range(
                pointer.copy_stripe, pointer.offset, pointer.length, matches
            )

    # -- writing ---------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self._closed:
            raise ArrayError(f"array {self.uuid} is closed")
        if self.read_only:
            raise ArrayError(f"array {self.uuid} is open read-only")
        if self._broken:
            raise ArrayError(f"array {self.uuid} stopped after an error: {self._broken}")

    @property
    def gc_minimum(self) -> int:
        """Return the stripes of the smallest gc commit, which forget and audit leave."""
        return self._reserve_bounds()[0]

    @property
    def forget_room(self) -> int:
        """Return the stripes of a forget commit, which audit-only commits also leave."""
        return self._reserve_bounds()[1]

    def _reserve_bounds(self) -> tuple[int, int]:
        if self._bounds is None:
            copies = 2 if self._twin_map else 1
            map_stripes = self.map_stripes_bound()
            self._bounds = (gc_minimum(map_stripes, copies), forget_room(map_stripes, copies))
        return self._bounds

    def free_stripe_count(self) -> int:
        """Return how many stripes the next commit may write (the reserve included)."""
        with self._lock:
            return int(np.count_nonzero(self.map.free_mask(self.event + 1)))

    def _free_list(self) -> np.ndarray:
        """Return the stripes the next commit may write, in allocation order from the cursor.

        It is computed once per commit (a scan of the whole map) and consumed
        from `_free_position`. Stripes freed in the meantime become writable
        only two commits later, so the list stays valid until the next commit.
        """
        if self._free_cache is None:
            mask = self.map.free_mask(self.event + 1)
            order = np.concatenate(
                [np.arange(self._cursor, self.stripe_count), np.arange(self._cursor)]
            )
            self._free_cache = order[mask[order]]
            self._free_position = 0
        return self._free_cache

    def _allocate(self, count: int, share: Reserve) -> list[int]:
        candidates = self._free_list()
        free = len(candidates) - self._free_position
        keep = kept_back(self.reserve_stripes, share, *self._reserve_bounds())
        if free - count < keep:
            raise ArrayFullError(
                f"array {self.name or self.uuid} is full: {free} free stripes, "
                f"{keep} kept for garbage collection; free space by "
                "expiring old versions: set [watch.retention] rules, run `raidctl forget`, "
                "then `raidctl gc` (`raidd forget` and `raidd gc` while the daemon is stopped)"
            )
        chosen = candidates[self._free_position : self._free_position + count]
        self._free_position += count
        self._cursor = (int(chosen[-1]) + 1) % self.stripe_count
        return [int(s) for s in chosen]

    def write_stripe(
        self, data: bytes | bytearray | memoryview, *, reserve: Reserve = Reserve.NONE
    ) -> int:
        """Write one stripe of data (zero padded) to a free stripe and return its number.

        The stripe is referenced from the next commit on. Raises ArrayFullError
        when only the part of the reserve that `reserve` may not use is left
        (raidd.array.reserve), and ArrayError when the array can no longer
        write redundantly enough to read back.
        """
        with self._lock:
            self._check_writable()
            if len(data) > self.stripe_data_size:
                raise ArrayError(
                    f"{len(data)} bytes do not fit a stripe of {self.stripe_data_size} bytes"
                )
            (stripe,) = self._allocate(1, reserve)
            self._keep_committed_row(stripe)
            self.map.set_entry(stripe, self.event + 1, FLAG_DATA, [0] * self.geometry.members)
            self.io.write_stripe(stripe, data)
            self._stop_if_beyond_tolerance("write")
            self._uncommitted.add(stripe)
            self._map_changed = True
            self.last_foreground_io = time.monotonic()
            return stripe

    def _record_checksums(self, checksums: dict[int, list[int]]) -> None:
        for stripe, values in checksums.items():
            self.map.entries[stripe]["checksums"] = values

    def flush(self) -> None:
        """Write out stripes queued by `write_stripe` (reads and commits do it themselves)."""
        with self._lock:
            self.io.flush()
            self._stop_if_beyond_tolerance("write")

    def free(self, stripes: Iterable[int]) -> None:
        """Release stripes; the next commit records it (reuse two commits later)."""
        with self._lock:
            self._check_writable()
            self.io.flush()
            for stripe in stripes:
                self._free_one(int(stripe))

    def discard_uncommitted(self) -> int:
        """Release every stripe written since the last commit, for a commit that failed.

        No commit references them, so they are free again at once, with the
        rows they had as last committed. Frees made since the last commit
        stay recorded for the next one. Returns how many stripes came back.
        """
        with self._lock:
            self.io.flush()
            released = sorted(self._uncommitted)
            for stripe in released:
                kept = self._owner_rows.pop(stripe, None)
                if kept is None:
                    self.map.set_entry(stripe, 0, 0, [0] * self.geometry.members)
                else:
                    self.map.entries[stripe] = kept
                    self.map.dirty.add(self.map.leaf_of(stripe))
            self._uncommitted.clear()
            self._free_cache = None
            if released:
                log.info("uncommitted_stripes_released", array=str(self.uuid), count=len(released))
            return len(released)

    def _keep_committed_row(self, stripe: int) -> None:
        if stripe not in self._owner_rows:
            self._owner_rows[stripe] = self.map.entries[stripe].copy()

    def _free_one(self, stripe: int) -> None:
        if not 0 <= stripe < self.stripe_count:
            raise ArrayError(f"stripe {stripe} is out of range 0..{self.stripe_count - 1}")
        self._keep_committed_row(stripe)
        flags = int(self.map.entries[stripe]["flags"])
        if not flags & FLAG_DATA:
            raise ArrayError(f"stripe {stripe} contains no data, so it cannot be freed")
        if stripe in self._uncommitted:
            # Never referenced by a commit, so it may be written again at once.
            self._uncommitted.discard(stripe)
            self.map.set_entry(stripe, 0, 0, [0] * self.geometry.members)
            self._free_cache = None
            return
        if flags & FLAG_MAP:
            self.map.entries[stripe]["flags"] = flags & ~FLAG_DATA
            self.map.dirty.add(self.map.leaf_of(stripe))
        else:
            self.map.mark_freed(stripe, self.event + 1)
        self._map_changed = True

    def commit(
        self,
        metadata_root: bytes,
        *,
        freed: Iterable[int] = (),
        tail: bytes | bytearray | memoryview = b"",
        checkpoint: Checkpoint | None = None,
        reserve: Reserve = Reserve.ALL,
    ) -> CommitResult:
        """Make every stripe written since the last commit durable and referenced.

        Order (docs/FORMAT.md, "Commit order"): the data stripes are already
        written. The changed map nodes and `tail` go to fresh stripes, and
        every member is fsynced. Then the superblock with the next event
        counter is written to every member and fsynced. The commit point is
        the first durable superblock. The map nodes may use the reserve as
        far as `reserve` allows. The store passes the share of the writes it
        commits, so a backup's commit stops where the reserve begins.

        Raises:
            ArrayFullError: no stripe left for the map nodes.
            ArrayError: the array lost more members than it tolerates.
        """
        with self._lock:
            self._check_writable()
            self.io.flush()
            freed = [int(stripe) for stripe in freed]
            rows_before = {stripe: self.map.entries[stripe].copy() for stripe in freed}
            written_before = self._uncommitted.intersection(freed)
            for stripe in freed:
                self._free_one(stripe)
            if len(metadata_root) > 256:
                raise ArrayError(f"metadata root is {len(metadata_root)} bytes; at most 256")
            if len(tail) > self.stripe_data_size:
                raise ArrayError(f"commit tail of {len(tail)} bytes exceeds one stripe")
            if checkpoint is not None:
                self.checkpoint = checkpoint
            event = self.event + 1
            tail_stripe = None
            self._stamp_owner_rows(event)
            try:
                if self._map_changed or self._job_map_changed or len(tail) > 0:
                    tail_stripe = self._write_map(event, bytes(tail), share=reserve)
            except ArrayFullError:
                # The map found no room, and nothing was repointed: this call's frees
                # are undone, so that the caller's next commit does not record them.
                for stripe, row in rows_before.items():
                    self.map.entries[stripe] = row
                    self.map.dirty.add(self.map.leaf_of(stripe))
                self._uncommitted |= written_before
                self._free_cache = None
                raise
            except (MemberError, IntegrityError) as error:
                self._broken = str(error)
                raise
            try:
                self.io.sync()
                self._stop_if_beyond_tolerance("commit")
                self.metadata_root = bytes(metadata_root)
                self._write_superblocks(event)
            except (MemberError, IntegrityError) as error:
                self._broken = str(error)
                raise
            self._uncommitted.clear()
            self._owner_rows.clear()
            self._map_changed = False
            self._job_map_changed = False
            log.info(
                "commit", array=str(self.uuid), event_counter=self.event, tail_stripe=tail_stripe
            )
            return CommitResult(self.event, tail_stripe)

    def _stamp_owner_rows(self, event: int) -> None:
        """Date the owner's frees at the commit that records them.

        Commits of jobs and state may come between a free and the owner's
        commit, and the two-commit reuse rule counts from the recording
        commit. Written stripes keep their stamp (the commit after which they
        were written): every commit syncs them, roll-forward needs no more,
        and a rebuild's target tells by it which strips it received directly.
        """
        for stripe in self._owner_rows:
            row = self.map.entries[stripe]
            if int(row["flags"]) & FLAG_FREED:
                row["written_at"] = event

    def mark_lost(self, stripe: int, roles_mask: int) -> None:
        """Record that the strips of `roles_mask` in `stripe` cannot be recovered.

        The mark is the engine's own change: `commit_job_changes` records it
        without the owner's uncommitted writes, and so does the owner's next
        commit.
        """
        with self._lock:
            self.map.set_lost(stripe, roles_mask)
            kept = self._owner_rows.get(stripe)
            if kept is not None and int(kept["flags"]) & (FLAG_DATA | FLAG_MAP):
                kept["lost"] = roles_mask
            self._job_map_changed = True

    def record_checksum(self, stripe: int, role: int, checksum: int) -> None:
        """Correct one strip's checksum in the map, as the engine's own change.

        Like a lost mark, `commit_job_changes` or the owner's next commit
        records it. Recovery calls this after rewriting a strip from a
        reconstruction that the store authenticated.
        """
        with self._lock:
            self.map.entries["checksums"][stripe, role] = checksum
            self.map.dirty.add(self.map.leaf_of(stripe))
            kept = self._owner_rows.get(stripe)
            if kept is not None and int(kept["flags"]) & (FLAG_DATA | FLAG_MAP):
                kept["checksums"][role] = checksum
            self._job_map_changed = True

    def commit_job_changes(self) -> int:
        """Commit the engine's own changes only; return the event counter.

        Jobs and administration call this while the owner may have written
        or freed stripes that it has not committed. Lost marks, member states
        and the checkpoint are recorded, and the owner's stripes are not: the
        map nodes written here carry the owner's rows as last committed, and
        the metadata root stays the committed one. So a crash before the
        owner's commit leaves its writes unreferenced and its frees undone.
        """
        with self._lock:
            self._check_writable()
            if not self._job_map_changed:
                return self.commit_state()
            self.io.flush()
            event = self.event + 1
            try:
                self._write_map(event, b"", overrides=self._owner_rows)
                self.io.sync()
                self._stop_if_beyond_tolerance("commit")
                self._write_superblocks(event)
            except (MemberError, IntegrityError) as error:
                self._broken = str(error)
                raise
            # The owner's next commit writes its own rows of these leaves.
            self.map.dirty.update(self.map.leaf_of(stripe) for stripe in self._owner_rows)
            self._job_map_changed = False
            log.info("commit_job_changes", array=str(self.uuid), event_counter=self.event)
            return self.event

    def _counters(self) -> list[tuple[int, int, int]]:
        return [slot.counters.as_tuple() for slot in self.slots]

    def counters_changed(self) -> bool:
        """Tell whether error counts changed since the superblocks were last written."""
        return self._counters() != self._counters_written

    def commit_state(self) -> int:
        """Write superblocks only (member states, checkpoint, keyslots); return the event."""
        with self._lock:
            self._check_writable()
            self.io.flush()
            self.io.sync()
            self._write_superblocks(self.event + 1)
            return self.event

    def _build_table(self, event: int) -> list[MemberEntry]:
        by_uuid = {slot.member_uuid: slot for slot in [*self.slots, *self.io.shadows]}
        for entry in self._table:
            slot = by_uuid.get(entry.member_uuid)
            if slot is None:
                continue
            entry.role = slot.role
            entry.state = slot.state
            entry.path = slot.path
            entry.errors = slot.counters.as_tuple()
            if slot.state is MemberState.ACTIVE and slot.member is not None:
                entry.in_sync_event = event
        known = {entry.member_uuid for entry in self._table}
        for slot in self.slots:
            if slot.member_uuid not in known and slot.member_uuid.int != 0:
                in_sync = event if slot.state is MemberState.ACTIVE else 0
                self._table.append(
                    MemberEntry(
                        slot.member_uuid,
                        slot.role,
                        slot.state,
                        in_sync,
                        slot.path,
                        slot.counters.as_tuple(),
                    )
                )
        return [copy.copy(entry) for entry in self._table]

    def _write_superblocks(self, event: int) -> None:
        for _attempt in range(len(self.slots) + 1):
            failed_before = sum(1 for slot in self.slots if not slot.writable)
            table = self._build_table(event)
            base = copy.copy(self._template)
            base.version = FORMAT_VERSION
            base.event_counter = event
            base.commit_tag = secrets.randbits(63)
            base.commit_time = int(time.time())
            base.map_root = self._root
            base.pending = list(self._pending)
            base.members = table
            base.metadata_root = self.metadata_root
            base.keyslot_area = self.keyslot_area
            base.checkpoint = copy.copy(self.checkpoint)
            for slot in self.io.writable_slots():
                assert slot.member is not None
                sb = copy.copy(base)
                sb.member_uuid = slot.member_uuid
                sb.role = slot.role
                try:
                    write_superblock(slot.member, sb)
                except MemberError as error:
                    slot.counters.write += 1
                    self._member_failed(slot, f"superblock write failed: {error}")
                    continue
                invalid = self.report.invalid_copies.get(str(slot.member_uuid))
                if invalid:
                    invalid.pop(str(event % 2), None)
                    invalid.pop("end", None)
            self.io.sync()
            self._stop_if_beyond_tolerance("commit")
            self.event = event
            self._free_cache = None
            self._template = base
            self._state_changed = False
            self._counters_written = self._counters()
            if sum(1 for slot in self.slots if not slot.writable) == failed_before:
                return
            # A member failed while the superblocks went out; record it in a further commit.
            event += 1
        raise ArrayError(f"array {self.uuid}: members kept failing while committing")

    # -- member failure --------------------------------------------------------------

    def _member_failed(self, slot: Slot, reason: str) -> None:
        if slot.state is MemberState.FAILED:
            return
        log.error(
            "member_failed",
            array=str(self.uuid),
            role=slot.role,
            member=slot.path,
            member_uuid=str(slot.member_uuid),
            reason=reason,
        )
        slot.state = MemberState.FAILED
        self._state_changed = True
        for listener in list(self.failure_listeners):
            listener(slot, reason)

    def _stop_if_beyond_tolerance(self, what: str) -> None:
        try:
            self.io.check_tolerance(f"array {self.name or self.uuid}: {what}")
        except ArrayError as error:
            self._broken = str(error)
            raise

    # -- reading ---------------------------------------------------------------------

    def _entry(self, stripe: int) -> tuple[int, list[int], int]:
        if not 0 <= stripe < self.stripe_count:
            raise ArrayError(f"stripe {stripe} is out of range 0..{self.stripe_count - 1}")
        entry = self.map.entries[stripe]
        if not int(entry["flags"]) & (FLAG_DATA | FLAG_MAP):
            raise ArrayError(f"stripe {stripe} of array {self.uuid} is not allocated")
        return int(entry["written_at"]), [int(c) for c in entry["checksums"]], int(entry["lost"])

    def read(self, stripe: int, offset: int = 0, length: int | None = None) -> bytes:
        """Return `length` bytes at `offset` of a stripe's data, verified.

        Raises:
            ArrayError: the stripe is not allocated or the range exceeds it.
            IntegrityError: the range cannot be recovered; names stripe and members.
        """
        with self._lock:
            if self._closed:
                raise ArrayError(f"array {self.uuid} is closed")
            length = self.stripe_data_size - offset if length is None else length
            if offset < 0 or length < 0 or offset + length > self.stripe_data_size:
                raise ArrayError(
                    f"range {offset}+{length} exceeds the stripe's {self.stripe_data_size} bytes"
                )
            self.io.flush()
            written_at, checksums, lost = self._entry(stripe)
            if length == 0:
                return b""
            first = offset // self.codec.strip_size
            last = (offset + length - 1) // self.codec.strip_size
            indices = list(range(first, last + 1))
            self._check_lost(stripe, lost, indices)
            strips = self.io.read_verified(stripe, written_at, checksums, lost, indices)
            self.last_foreground_io = time.monotonic()
            data = b"".join(strips[i] for i in indices)
            start = offset - first * self.codec.strip_size
            return data[start : start + length]

    def recover_range(
        self, stripe: int, offset: int, length: int, accept: Callable[[bytes], bool]
    ) -> bytes | None:
        """Return a reading of the range that `accept` approves, ignoring checksums; or None.

        For bytes that passed their strip checksums but fail a check above
        the engine (object authentication): every reading within the fault
        tolerance is offered to `accept`, and the stripe is repaired from
        the one accepted (see `raidd.array.recover`).
        """
        from raidd.array.recover import recover_range  # builds on Array, so import late

        if self._closed:
            raise ArrayError(f"array {self.uuid} is closed")
        return recover_range(self, stripe, offset, length, accept)

    def advise_read(self, stripe: int, count: int = 1) -> None:
        """Hint that `count` stripes from `stripe` on will be read soon.

        Every member starts reading their strips into the page cache
        (posix_fadvise WILLNEED) and this returns at once, so reads issued
        one strip at a time later find the data there. Nothing is checked
        or returned; `read` verifies as always. A restore calls it for the
        stripes of the chunks it is about to read.
        """
        if self._closed or count <= 0 or not 0 <= stripe < self.stripe_count:
            return
        self.io.advise_read(stripe, min(count, self.stripe_count - stripe))

    def range_lost(self, stripe: int, offset: int, length: int) -> bool:
        """Tell whether bytes of a stripe's data were recorded as lost, without reading them.

        A rebuild or scrub marks the strips it cannot recover in the map. The
        store asks this before it reuses a stored chunk, so that a chunk in a
        lost stripe is stored again rather than referenced again.
        """
        with self._lock:
            lost = int(self.map.entries[stripe]["lost"])
            if not lost or length <= 0:
                return False
            first = max(0, offset) // self.codec.strip_size
            last = (offset + length - 1) // self.codec.strip_size
            return self._first_lost(stripe, lost, list(range(first, last + 1))) is not None

    def _first_lost(self, stripe: int, lost: int, indices: list[int]) -> int | None:
        """Return the first data strip of `indices` whose every copy is lost, or None."""
        roles = self.codec.data_roles(stripe)
        for index in indices:
            if all(lost & (1 << role) for role in roles[index]):
                return index
        return None

    def _check_lost(self, stripe: int, lost: int, indices: list[int]) -> None:
        if not lost:
            return
        index = self._first_lost(stripe, lost, indices)
        if index is not None:
            names = [
                self.slots[r].path or f"role {r}"
                for r in range(len(self.slots))
                if lost & (1 << r)
            ]
            start = index * self.codec.strip_size
            raise IntegrityError(
                f"stripe {stripe} bytes {start}..{start + self.codec.strip_size - 1} "
                f"were recorded as lost by a rebuild or scrub (members {names})"
            )

    def scrub(self, *, repair: bool = True) -> Any:
        """Scrub every allocated stripe now; return the job's result (see `jobs.Scrub`)."""
        from raidd.array.scrub import scrub  # scrub builds on Array, so import late

        return scrub(self, repair=repair)

    # -- status and lifetime ---------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Return state, geometry, fill level and per-member state and error counters."""
        with self._lock:
            allocated = int(self.map.allocated_stripes().size)
            return {
                "array_uuid": str(self.uuid),
                "name": self.name,
                "level": self.level,
                "strip_size": self.codec.strip_size,
                "member_count": self.geometry.members,
                "state": "degraded" if self.degraded else "clean",
                "event_counter": self.event,
                "stripes": self.stripe_count,
                "allocated_stripes": allocated,
                "free_stripes": self.free_stripe_count(),
                "reserve_stripes": self.reserve_stripes,
                "lost_stripes": [int(s) for s in self.map.lost_stripes()],
                "members": [
                    {
                        "role": slot.role,
                        "member_uuid": str(slot.member_uuid),
                        "path": slot.path,
                        "state": slot.state.name.lower(),
                        "read_errors": slot.counters.read,
                        "write_errors": slot.counters.write,
                        "checksum_errors": slot.counters.checksum,
                    }
                    for slot in self.slots
                ],
                "spares": [
                    {"member_uuid": str(s.member_uuid), "path": s.path} for s in self.spares
                ],
            }

    def close(self) -> None:
        """Close every member and release the lock; uncommitted stripes are dropped."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            # NOTE: queued stripes are dropped, like every uncommitted write.
            self.io.close()
            for slot in [*self.slots, *self.io.shadows]:
                if slot.member is not None:
                    slot.member.close()
            for spare in self.spares:
                if spare.member is not None:
                    spare.member.close()
            if self._lock_file is not None:
                self._lock_file.release()
            log.debug("array_closed", array=str(self.uuid), pid=os.getpid())

    def __enter__(self) -> Array:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
