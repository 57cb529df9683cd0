"""Shares of the reserve: the free stripes each kind of writer may use.

The reserve (`reserve_stripes` in the superblock) exists so that garbage
collection, the only way to free space, can run on a full array. Each
writer names its share, and `Array` enforces it at every allocation:

- NONE: backups. They stop where the reserve begins.
- PART: forget, which frees nothing itself but lets gc free. It may use
  at most half of the reserve, and less when the smallest gc commit of the
  array (`gc_minimum`) needs more than the other half, so that gc can run
  however often forget ran.
- AUDIT: audit-only commits. Like PART, and they also leave room for one
  forget commit (`forget_room`), so that records committed on a full array
  never keep the user from expiring versions. Records that find no room
  wait and go with the next commit (forget's or gc's).
- ALL: gc, and the engine's own small commits (lost marks, member states).
"""

from __future__ import annotations

import enum

__all__ = ["MIN_RESERVE", "Reserve", "forget_room", "gc_minimum", "kept_back"]

# The smallest reserve of a new array: RAID0's smallest gc commit (twice the
# metadata, twice the map) takes about 12 stripes, and forget needs a few more.
MIN_RESERVE = 16


class Reserve(enum.Enum):
    """How much of the reserve a writer may use."""

    NONE = "none"
    AUDIT = "audit"
    PART = "part"
    ALL = "all"


def gc_minimum(map_stripes: int, metadata_copies: int) -> int:
    """Return the stripes of the smallest gc commit of a modest history.

    Args:
        map_stripes: the most stripes a commit's map takes (every node anew).
        metadata_copies: 2 on RAID0, which writes metadata twice, else 1.

    Returns:
        The map, plus per copy the base index segment, the top manifest, the
        audit records waiting for a commit and one height of pages (two
        stripes), each ending a stripe of its own.
    """
    # NOTE: a history of more than page_refs**2 objects, or a base segment of
    # more than a stripe of entries, needs more; gc then frees without
    # compaction, or fails with the number of stripes it needs.
    return map_stripes + 5 * metadata_copies


def forget_room(map_stripes: int, metadata_copies: int) -> int:
    """Return the stripes of a forget commit: its map, and per copy 3 objects.

    Args:
        map_stripes: the most stripes a commit's map takes (every node anew).
        metadata_copies: 2 on RAID0, which writes metadata twice, else 1.
    """
    return map_stripes + 3 * metadata_copies


def kept_back(reserve_stripes: int, share: Reserve, minimum: int = 0, forget: int = 0) -> int:
    """Return how many free stripes a writer with `share` must leave untouched.

    Args:
        reserve_stripes: the array's reserve.
        share: the writer's share of it.
        minimum: the smallest gc commit (`gc_minimum`), which PART leaves.
        forget: a forget commit (`forget_room`), which AUDIT leaves as well.

    Returns:
        The whole reserve for NONE, and 0 for ALL. For PART, the larger
        half of the reserve, or `minimum` if more. For AUDIT, the PART value
        plus `forget`. Never more than the reserve.
    """
    if share is Reserve.NONE:
        return reserve_stripes
    if share is Reserve.ALL:
        return 0
    keep = max(reserve_stripes - reserve_stripes // 2, minimum)
    if share is Reserve.AUDIT:
        keep += forget
    return min(reserve_stripes, keep)
