"""Writing the allocation map at a commit: node stripes, RAID0 copies, pending lists.

`MapWriter` is a part of `Array` (its base class), kept apart because it
is one concept: laying out the changed map nodes, the caller's tail and
the pending records of a commit in fresh stripes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from raidd.array.allocmap import (
    FLAG_COPY,
    FLAG_DATA,
    FLAG_LIST,
    FLAG_MAP,
    NODE_ALIGNMENT,
    list_capacity,
    pack_pending_list,
)
from raidd.array.reserve import Reserve
from raidd.array.superblock import MAX_PENDING, PendingStripe

if TYPE_CHECKING:
    from parity import Geometry
    from raidd.array.allocmap import AllocationMap, NodePlan
    from raidd.array.stripeio import StripeIO
    from raidd.array.superblock import MapPointer


class MapWriter:
    """The map-writing part of Array; every attribute it uses is Array's."""

    map: AllocationMap
    io: StripeIO
    stripe_data_size: int
    level: int
    _pending: list[PendingStripe]
    _root: MapPointer

    if TYPE_CHECKING:
        geometry: Geometry

        def _allocate(self, count: int, share: Reserve) -> list[int]: ...

        def _stop_if_beyond_tolerance(self, what: str) -> None: ...

    def _write_map(
        self,
        event: int,
        tail: bytes,
        overrides: dict[int, np.void] | None = None,
        share: Reserve = Reserve.ALL,
    ) -> int | None:
        # This commit inserts the records of the last one's pending lists, so
        # those lists are released (and freed at this commit).
        self.map.orphans |= self.map.list_stripes
        self.map.list_stripes = set()
        self.map.release_orphans(event)
        plans = self.map.plan()
        layout = self._layout(plans, len(tail))
        count = layout[-1][0] + 1 if layout else 1
        copies = count if self._twin_map else 0
        list_counts = self._pending_list_counts(count + copies)
        # Every stripe is allocated before the tree is repointed, so that a full
        # array fails the commit with the in-memory map unchanged.
        allocated = self._allocate(count + copies + sum(list_counts), share)
        stripes = allocated[:count]
        copy_stripes = allocated[count : count + copies]
        list_stripes = allocated[count + copies :]
        places = [(stripes[i], off) for i, off in layout]
        nodes, root = self.map.serialize(
            plans,
            places,
            event,
            hidden=set(allocated),
            overrides=overrides,
            copies=dict(zip(stripes, copy_stripes, strict=False)),
        )
        buffers = []
        for stripe in stripes:
            buffer = bytearray(self.stripe_data_size)
            for node_offset, data in nodes.get(stripe, []):
                buffer[node_offset : node_offset + len(data)] = data
            buffers.append(buffer)
        # A copy contains the nodes only. The tail is the caller's data, and a copy the
        # caller does not know of would outlive its frees (and an erasure).
        for stripe, buffer in zip(copy_stripes, buffers, strict=False):
            self.io.write_stripe(stripe, buffer)
        self.io.flush()
        buffers[0][: len(tail)] = tail
        for stripe, buffer in zip(stripes, buffers, strict=True):
            self.io.write_stripe(stripe, buffer)
        self.io.flush()
        records = [
            self._pending_record(stripe, event, FLAG_MAP | (FLAG_DATA if i == 0 and tail else 0))
            for i, stripe in enumerate(stripes)
        ]
        records += [self._pending_record(stripe, event, FLAG_MAP) for stripe in copy_stripes]
        top, everything = self._write_pending_lists(records, list_stripes, list_counts, event)
        self._stop_if_beyond_tolerance("commit")
        self.map.apply_pending(everything)
        self.map.list_stripes = set(list_stripes)
        self._pending = top
        self._root = root
        return stripes[0] if tail else None

    def _layout(self, plans: list[NodePlan], tail_length: int) -> list[tuple[int, int]]:
        """Place nodes after the tail: (stripe index, offset); a node never straddles."""
        layout: list[tuple[int, int]] = []
        stripe_index, offset = 0, -(-tail_length // NODE_ALIGNMENT) * NODE_ALIGNMENT
        for plan in plans:
            if offset + plan.size > self.stripe_data_size:
                stripe_index, offset = stripe_index + 1, 0
            layout.append((stripe_index, offset))
            offset += -(-plan.size // NODE_ALIGNMENT) * NODE_ALIGNMENT
        return layout

    def map_stripes_bound(self) -> int:
        """Return the most stripes one commit's map takes: every node written anew.

        The bound of a commit that frees stripes all over the map (gc) uses
        it: every node (the store's commits write no tail), RAID0's copies
        and the pending lists above them.
        """
        layout = self._layout(self.map.plan_all(), 0)
        count = layout[-1][0] + 1 if layout else 1
        copies = count if self._twin_map else 0
        return count + copies + sum(self._pending_list_counts(count + copies))

    def _pending_record(self, stripe: int, event: int, flags: int) -> PendingStripe:
        checksums = tuple(int(c) for c in self.map.entries[stripe]["checksums"])
        return PendingStripe(stripe, event, flags, checksums)

    @property
    def _twin_map(self) -> bool:
        """Tell whether map stripes are written twice: on RAID0, which has no parity."""
        return self.level == 0

    def _pending_list_counts(self, count: int) -> list[int]:
        """Return how many pending-list stripes each level needs above `count` map stripes."""
        capacity = list_capacity(self.stripe_data_size, self.geometry.members)
        counts = []
        while count > MAX_PENDING:
            count = -(-count // capacity) * (2 if self._twin_map else 1)
            counts.append(count)
        return counts

    def _write_pending_lists(
        self, records: list[PendingStripe], stripes: list[int], counts: list[int], event: int
    ) -> tuple[list[PendingStripe], list[PendingStripe]]:
        """Write the records that exceed the superblock's list into pending-list stripes.

        Each level packs the records of the level below; the superblock lists
        the top level. Returns that level and every record of the commit.
        """
        capacity = list_capacity(self.stripe_data_size, self.geometry.members)
        everything = list(records)
        level = records
        for count in counts:
            chosen, stripes = stripes[:count], stripes[count:]
            # On RAID0 the second half receives copies, listed each after its original.
            lists = count // 2 if self._twin_map else count
            for index, stripe in enumerate(chosen):
                chunk = level[(index % lists) * capacity : (index % lists + 1) * capacity]
                self.io.write_stripe(
                    stripe, pack_pending_list(chunk, self.geometry.members, event)
                )
            self.io.flush()
            level = []
            for index in range(lists):
                level.append(self._pending_record(chosen[index], event, FLAG_MAP | FLAG_LIST))
                if self._twin_map:
                    flags = FLAG_MAP | FLAG_LIST | FLAG_COPY
                    level.append(self._pending_record(chosen[lists + index], event, flags))
            everything.extend(level)
        return level, everything
