"""The allocation map: per stripe, its state, the commit it was written at, strip checksums.

On the members the map is a copy-on-write radix tree. Leaves hold the
entries of `entries_per_leaf` consecutive stripes; internal nodes hold up to
`fanout` pointers (stripe, offset, length, BLAKE2b-128 of the child, and on
RAID0 the stripe of the child's second copy). A
commit rewrites only the leaves whose entries changed and the internal nodes
above them, packed into the commit's metadata stripes; the superblock points
at the root.

A metadata stripe cannot hold its own strip checksums (they depend on the
node written into it), so each commit lists its metadata stripes with their
checksums in the superblock ("pending"), and the next commit that writes the
map inserts them into the tree. The map as a whole is tree plus pending.
When a commit writes more metadata stripes than the superblock lists, their
records go into pending-list stripes (FLAG_LIST), written after them, and
the superblock lists those instead, as many levels deep as needed.

In memory the whole map is one numpy structured array, loaded at assembly.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from raidd.array.superblock import NO_COPY, MapPointer, PendingStripe
from raidd.errors import ArrayError, IntegrityError

FLAG_DATA = 0x1
FLAG_MAP = 0x2
FLAG_FREED = 0x4
# A stripe holding a pending list: records of other metadata stripes of its commit.
FLAG_LIST = 0x8
# With FLAG_LIST on RAID0: the second copy of the list record just before it.
FLAG_COPY = 0x10

LIST_MAGIC = b"RPND"
LIST_VERSION = 1
# magic, version, reserved, record count, record size, commit
LIST_HEADER_FORMAT = "<4sHHIIQ"
LIST_HEADER_SIZE = struct.calcsize(LIST_HEADER_FORMAT)

NODE_MAGIC = b"RMAP"
# Version 2 pointers carry copy_stripe; version 1 nodes (32-byte pointers) still load.
NODE_VERSION = 2
NODE_LEAF = 0
NODE_INTERNAL = 1
NODE_HEADER_FORMAT = "<4sHBBQIIQ"
NODE_HEADER_SIZE = struct.calcsize(NODE_HEADER_FORMAT)
POINTER_FORMAT = "<QII16sQ"
POINTER_SIZE = struct.calcsize(POINTER_FORMAT)
POINTER_FORMAT_V1 = "<QII16s"
POINTER_SIZE_V1 = struct.calcsize(POINTER_FORMAT_V1)
MAX_NODE_ENTRIES = 128
NODE_ALIGNMENT = 8


def entry_dtype(member_count: int) -> np.dtype:
    """Return the dtype of one map entry: 16 + 8 * member_count bytes."""
    return np.dtype(
        [
            ("written_at", "<u8"),
            ("flags", "<u4"),
            ("lost", "<u4"),
            ("checksums", "<u8", (member_count,)),
        ]
    )


def node_checksum(data: bytes | bytearray | memoryview) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def list_record_format(member_count: int) -> str:
    """Return the struct format of one pending-list record: stripe, commit, flags, checksums."""
    return f"<QQII{member_count}Q"


def list_capacity(stripe_data_size: int, member_count: int) -> int:
    """Return how many records one pending-list stripe holds."""
    size = struct.calcsize(list_record_format(member_count))
    return (stripe_data_size - LIST_HEADER_SIZE) // size


def pack_pending_list(records: list[PendingStripe], member_count: int, event: int) -> bytes:
    """Serialize records into the data of one pending-list stripe."""
    record_format = list_record_format(member_count)
    parts = [
        struct.pack(
            LIST_HEADER_FORMAT,
            LIST_MAGIC,
            LIST_VERSION,
            0,
            len(records),
            struct.calcsize(record_format),
            event,
        )
    ]
    for record in records:
        parts.append(
            struct.pack(
                record_format, record.stripe, record.written_at, record.flags, 0, *record.checksums
            )
        )
    return b"".join(parts)


def unpack_pending_list(data: bytes, member_count: int, stripe: int) -> list[PendingStripe]:
    """Parse a pending-list stripe's data.

    Raises:
        ArrayError: the header or the record size is wrong.
    """
    record_format = list_record_format(member_count)
    size = struct.calcsize(record_format)
    magic, version, _, count, record_size, _ = struct.unpack_from(LIST_HEADER_FORMAT, data, 0)
    if magic != LIST_MAGIC or version != LIST_VERSION or record_size != size:
        raise ArrayError(f"pending list in stripe {stripe} is malformed")
    if LIST_HEADER_SIZE + count * size > len(data):
        raise ArrayError(f"pending list in stripe {stripe} claims {count} records, too many")
    records = []
    for index in range(count):
        fields = struct.unpack_from(record_format, data, LIST_HEADER_SIZE + index * size)
        records.append(PendingStripe(fields[0], fields[1], fields[2], tuple(fields[4:])))
    return records


def _power_of_two_at_most(value: int) -> int:
    return 1 << (max(1, value).bit_length() - 1)


@dataclass(frozen=True)
class MapShape:
    entries_per_leaf: int
    fanout: int
    depth: int

    @classmethod
    def for_array(cls, stripe_count: int, member_count: int, stripe_data_size: int) -> MapShape:
        """Choose leaf and internal node sizes so that every node fits in one stripe."""
        room = stripe_data_size - NODE_HEADER_SIZE
        entry_size = entry_dtype(member_count).itemsize
        entries = _power_of_two_at_most(min(MAX_NODE_ENTRIES, room // entry_size))
        fanout = _power_of_two_at_most(min(MAX_NODE_ENTRIES, room // POINTER_SIZE))
        if fanout < 2:
            raise ArrayError(f"stripes of {stripe_data_size} bytes are too small for the map")
        depth = 0
        count = math.ceil(stripe_count / entries)
        while count > 1:
            count = math.ceil(count / fanout)
            depth += 1
        return cls(entries, fanout, depth)


@dataclass(frozen=True)
class NodePlan:
    """One node a commit writes: its level (0 = leaf), index within the level and size."""

    level: int
    index: int
    size: int


class AllocationMap:
    """The in-memory allocation map and its copy-on-write tree on the members."""

    def __init__(self, stripe_count: int, member_count: int, shape: MapShape) -> None:
        self.stripe_count = stripe_count
        self.member_count = member_count
        self.shape = shape
        self.dtype = entry_dtype(member_count)
        self.entries = np.zeros(stripe_count, dtype=self.dtype)
        counts = [math.ceil(stripe_count / shape.entries_per_leaf)]
        for _ in range(shape.depth):
            counts.append(math.ceil(counts[-1] / shape.fanout))
        self.level_counts = counts
        self.pointers: list[list[MapPointer]] = [[MapPointer()] * c for c in counts]
        self.node_refs: dict[int, int] = {}
        self.dirty: set[int] = set()
        self.deferred_dirty: set[int] = set()
        self.orphans: set[int] = set()
        # Pending-list stripes of the newest map-writing commit; the next one frees them.
        self.list_stripes: set[int] = set()

    # -- entries ---------------------------------------------------------------------

    def leaf_of(self, stripe: int) -> int:
        return stripe // self.shape.entries_per_leaf

    def set_entry(
        self, stripe: int, written_at: int, flags: int, checksums: Iterable[int], lost: int = 0
    ) -> None:
        entry = self.entries[stripe]
        entry["written_at"] = written_at
        entry["flags"] = flags
        entry["lost"] = lost
        entry["checksums"] = list(checksums)
        self.dirty.add(self.leaf_of(stripe))

    def mark_freed(self, stripe: int, event: int) -> None:
        """Record `stripe` as freed by commit `event` (reusable from commit event + 2)."""
        self.set_entry(stripe, event, FLAG_FREED, [0] * self.member_count)

    def set_lost(self, stripe: int, roles_mask: int) -> None:
        self.entries[stripe]["lost"] = roles_mask
        self.dirty.add(self.leaf_of(stripe))

    def is_allocated(self, stripe: int) -> bool:
        return bool(int(self.entries[stripe]["flags"]) & (FLAG_DATA | FLAG_MAP))

    def free_mask(self, event: int) -> np.ndarray:
        """Return a boolean mask of stripes that commit `event` may write."""
        flags = self.entries["flags"]
        written = self.entries["written_at"]
        unused = (flags & (FLAG_DATA | FLAG_MAP)) == 0
        settled = ((flags & FLAG_FREED) == 0) | (written + 2 <= event)
        return unused & settled

    def allocated_stripes(self) -> np.ndarray:
        flags = self.entries["flags"]
        return np.flatnonzero((flags & (FLAG_DATA | FLAG_MAP)) != 0)

    def lost_stripes(self) -> np.ndarray:
        """Return the allocated stripes with strips recorded as lost (by a rebuild or scrub)."""
        flags = self.entries["flags"]
        allocated = (flags & (FLAG_DATA | FLAG_MAP)) != 0
        return np.flatnonzero(allocated & (self.entries["lost"] != 0))

    # -- pending metadata stripes and orphans -------------------------------------

    def apply_pending(self, pending: Iterable[PendingStripe]) -> None:
        """Put a commit's metadata stripes into memory; the tree gets them at the next write."""
        for record in pending:
            self.set_entry(record.stripe, record.written_at, record.flags, record.checksums)
            self.dirty.discard(self.leaf_of(record.stripe))
            self.deferred_dirty.add(self.leaf_of(record.stripe))

    def release_orphans(self, event: int) -> None:
        """Drop the map flag of stripes whose nodes were all replaced; free them if empty."""
        for stripe in sorted(self.orphans):
            flags = int(self.entries[stripe]["flags"]) & ~FLAG_MAP
            if flags & FLAG_DATA:
                self.entries[stripe]["flags"] = flags
                self.dirty.add(self.leaf_of(stripe))
            else:
                self.mark_freed(stripe, event)
        self.orphans.clear()

    # -- loading -------------------------------------------------------------------

    def load(
        self,
        root: MapPointer,
        pending: list[PendingStripe],
        read_node: Callable[[MapPointer], bytes],
        read_list: Callable[[PendingStripe], bytes] | None = None,
    ) -> None:
        """Read the tree under `root` into memory, then apply `pending`.

        `read_list` returns the verified data of a pending-list stripe; the
        records of every list (and of lists within lists) are applied too.

        Raises:
            ArrayError: a node that fails its checksum everywhere or is inconsistent.
        """
        pending = self._expand_pending(pending, read_list)
        top = len(self.level_counts) - 1
        self.pointers[top][0] = root
        for level in range(top, -1, -1):
            for index, pointer in enumerate(self.pointers[level]):
                if pointer.is_null:
                    continue
                data = read_node(pointer)
                self._add_ref(pointer)
                self._parse_node(data, level, index)
        pending_stripes = {record.stripe for record in pending}
        self.apply_pending(pending)
        for stripe in np.flatnonzero((self.entries["flags"] & FLAG_MAP) != 0):
            if int(stripe) not in self.node_refs and int(stripe) not in pending_stripes:
                self.orphans.add(int(stripe))
        self.dirty.clear()

    def _expand_pending(
        self,
        pending: list[PendingStripe],
        read_list: Callable[[PendingStripe], bytes] | None,
    ) -> list[PendingStripe]:
        records = list(pending)
        index = 0
        while index < len(records):
            record = records[index]
            index += 1
            if not record.flags & FLAG_LIST:
                continue
            if read_list is None:
                raise ArrayError(f"stripe {record.stripe} holds a pending list; pass read_list")
            self.list_stripes.add(record.stripe)
            if record.flags & FLAG_COPY:
                continue  # read above, only when the list before it failed
            try:
                data = read_list(record)
            except IntegrityError:
                copy = records[index] if index < len(records) else None
                if copy is None or not copy.flags & FLAG_COPY:
                    raise
                data = read_list(copy)
            records.extend(unpack_pending_list(data, self.member_count, record.stripe))
        return records

    def _parse_node(self, data: bytes, level: int, index: int) -> None:
        magic, version, kind, node_level, first, count, entry_size, _commit = struct.unpack_from(
            NODE_HEADER_FORMAT, data, 0
        )
        expected_kind = NODE_LEAF if level == 0 else NODE_INTERNAL
        if magic != NODE_MAGIC or version not in (1, NODE_VERSION) or kind != expected_kind:
            raise ArrayError(f"allocation map node at level {level} index {index} is malformed")
        if node_level != level or first != index * self._span(level):
            raise ArrayError(f"allocation map node at level {level} index {index} is misplaced")
        body = data[NODE_HEADER_SIZE:]
        if level == 0:
            if entry_size != self.dtype.itemsize or count != self._leaf_count(index):
                raise ArrayError(f"allocation map leaf {index} has a wrong entry size or count")
            start = index * self.shape.entries_per_leaf
            rows = np.frombuffer(body, dtype=self.dtype, count=count)
            self.entries[start : start + count] = rows
            return
        children = self.pointers[level - 1]
        start = index * self.shape.fanout
        pointer_format = POINTER_FORMAT if version == NODE_VERSION else POINTER_FORMAT_V1
        if entry_size != struct.calcsize(pointer_format) or count != min(
            self.shape.fanout, len(children) - start
        ):
            raise ArrayError(f"allocation map node at level {level} index {index} is malformed")
        for i in range(count):
            fields = struct.unpack_from(pointer_format, body, i * entry_size)
            children[start + i] = MapPointer(*fields)

    def _span(self, level: int) -> int:
        """Return how many stripes (level 0) or children (above) index units one node covers."""
        if level == 0:
            return self.shape.entries_per_leaf
        return self.shape.fanout

    def _leaf_count(self, leaf: int) -> int:
        start = leaf * self.shape.entries_per_leaf
        return min(self.shape.entries_per_leaf, self.stripe_count - start)

    # -- writing -------------------------------------------------------------------

    def plan(self) -> list[NodePlan]:
        """Return the nodes the next commit writes: dirty leaves and every node above them."""
        self.dirty |= self.deferred_dirty
        plans: list[NodePlan] = []
        indices = sorted(self.dirty)
        for level in range(len(self.level_counts)):
            for index in indices:
                plans.append(NodePlan(level, index, self._node_size(level, index)))
            indices = sorted({index // self.shape.fanout for index in indices})
        return plans

    def plan_all(self) -> list[NodePlan]:
        """Return every node of the tree, as `plan` would if every leaf were dirty."""
        return [
            NodePlan(level, index, self._node_size(level, index))
            for level, count in enumerate(self.level_counts)
            for index in range(count)
        ]

    def _node_size(self, level: int, index: int) -> int:
        if level == 0:
            return NODE_HEADER_SIZE + self._leaf_count(index) * self.dtype.itemsize
        below = self.level_counts[level - 1]
        count = min(self.shape.fanout, below - index * self.shape.fanout)
        return NODE_HEADER_SIZE + count * POINTER_SIZE

    def serialize(
        self,
        plans: list[NodePlan],
        places: list[tuple[int, int]],
        event: int,
        hidden: set[int],
        overrides: dict[int, np.void] | None = None,
        copies: dict[int, int] | None = None,
    ) -> tuple[dict[int, list[tuple[int, bytes]]], MapPointer]:
        """Build the planned nodes and repoint the tree at them.

        Args:
            plans: from `plan`, leaves first, then each level above.
            places: (stripe, offset) of each planned node, in the same order.
            event: the commit being written.
            hidden: this commit's metadata stripes; their entries are written as
                free and supplied by the superblock's pending list instead.
            overrides: rows written in place of the in-memory ones, by stripe
                (a job's commit writes the owner's uncommitted stripes as last
                committed).
            copies: on RAID0, the stripe that receives a copy of each node stripe.

        Returns:
            The nodes by stripe as (offset, bytes), and the new root pointer.
        """
        out: dict[int, list[tuple[int, bytes]]] = {}
        for plan, (stripe, offset) in zip(plans, places, strict=True):
            data = self._build_node(plan, event, hidden, overrides or {})
            old = self.pointers[plan.level][plan.index]
            if not old.is_null:
                self._drop_ref(old.stripe)
                if old.copy_stripe != NO_COPY:
                    self._drop_ref(old.copy_stripe)
            copy = (copies or {}).get(stripe, NO_COPY)
            pointer = MapPointer(stripe, offset, len(data), node_checksum(data), copy)
            self.pointers[plan.level][plan.index] = pointer
            self._add_ref(pointer)
            out.setdefault(stripe, []).append((offset, data))
        self.dirty.clear()
        self.deferred_dirty.clear()
        return out, self.pointers[-1][0]

    def _add_ref(self, pointer: MapPointer) -> None:
        for stripe in (pointer.stripe, pointer.copy_stripe):
            if stripe != NO_COPY:
                self.node_refs[stripe] = self.node_refs.get(stripe, 0) + 1

    def _drop_ref(self, stripe: int) -> None:
        self.node_refs[stripe] -= 1
        if self.node_refs[stripe] == 0:
            del self.node_refs[stripe]
            self.orphans.add(stripe)

    def _build_node(
        self, plan: NodePlan, event: int, hidden: set[int], overrides: dict[int, np.void]
    ) -> bytes:
        if plan.level == 0:
            start = plan.index * self.shape.entries_per_leaf
            count = self._leaf_count(plan.index)
            rows = self.entries[start : start + count].copy()
            for stripe, row in overrides.items():
                if start <= stripe < start + count:
                    rows[stripe - start] = row
            for stripe in hidden:
                if start <= stripe < start + count:
                    rows[stripe - start] = np.zeros(1, dtype=self.dtype)[0]
            header = struct.pack(
                NODE_HEADER_FORMAT,
                NODE_MAGIC,
                NODE_VERSION,
                NODE_LEAF,
                0,
                start,
                count,
                self.dtype.itemsize,
                event,
            )
            return header + rows.tobytes()
        children = self.pointers[plan.level - 1]
        start = plan.index * self.shape.fanout
        count = min(self.shape.fanout, len(children) - start)
        body = b"".join(
            struct.pack(POINTER_FORMAT, p.stripe, p.offset, p.length, p.checksum, p.copy_stripe)
            for p in children[start : start + count]
        )
        header = struct.pack(
            NODE_HEADER_FORMAT,
            NODE_MAGIC,
            NODE_VERSION,
            NODE_INTERNAL,
            plan.level,
            start,
            count,
            POINTER_SIZE,
            event,
        )
        return header + body
