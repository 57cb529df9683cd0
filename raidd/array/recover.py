"""Recovery of a byte range that passed its strip checksums but fails a check above them.

The engine verifies strips against the CRC-32 checksums of the allocation
map, so it returns bad bytes only when a checksum is wrong as well. That is
a corruption whose CRC happens to match (odds of 2^-32 per bad strip), or a
wrong checksum recorded together with the strip. The store notices when the
object fails authentication. It then asks for every other way to read the
range within the fault tolerance: each member (on RAID6 each pair of
members) taken as wrong in turn and rebuilt from the others, on RAID1 and
RAID10 the other copies. The first candidate the caller accepts is returned,
and the stripe is repaired from it.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from parity import Level
from raidd.array.codec import UnrecoverableStripeError, strip_checksum

if TYPE_CHECKING:
    from raidd.array.array import Array

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Candidate:
    """One way to read a range: its bytes, the roles taken as wrong, and the whole stripe.

    `stripe_strips` is the stripe by role as this candidate rebuilds it,
    `read` the strips as read from the members (None where unreadable).
    """

    data: bytes
    erased: tuple[int, ...]
    stripe_strips: list[bytes]
    read: list[bytes | None]


def _patterns(array: Array, stripe: int, read: list[bytes | None]) -> Iterator[tuple[int, ...]]:
    """Yield the sets of roles to take as wrong: none, the RAID6 located one, then all others."""
    yield ()
    available = [role for role, strip in enumerate(read) if strip is not None]
    if array.codec.level is Level.RAID6 and len(available) == len(read):
        verdict = array.codec.verify(stripe, [s for s in read if s is not None])
        if verdict.bad_index is not None:
            # The P and Q syndromes name the single wrong strip: try it first.
            yield (array.codec.role_of_logical(stripe, verdict.bad_index),)
    for count in range(1, array.geometry.tolerance + 1):
        yield from itertools.combinations(available, count)


def range_candidates(
    array: Array, stripe: int, offset: int, length: int, written_at: int, lost: int
) -> Iterator[Candidate]:
    """Yield the distinct ways to read `length` bytes at `offset` of a stripe's data.

    Checksums are ignored: the caller judges each candidate. Strips marked
    lost and unreadable strips count as missing. Call with the array lock held.
    """
    read = [
        None if lost & (1 << slot.role) else array.io.read_strip(slot, stripe, written_at)
        for slot in array.slots
    ]
    seen: set[bytes] = set()
    for erased in _patterns(array, stripe, read):
        trial = [None if role in erased else strip for role, strip in enumerate(read)]
        try:
            strips = array.codec.reconstruct(stripe, trial)
        except UnrecoverableStripeError:
            continue
        data = array.codec.join(stripe, strips)[offset : offset + length]
        digest = hashlib.blake2b(data, digest_size=16).digest()
        if digest in seen:
            continue
        seen.add(digest)
        yield Candidate(data, erased, strips, read)


def recover_range(
    array: Array, stripe: int, offset: int, length: int, accept: Callable[[bytes], bool]
) -> bytes | None:
    """Return the first reading of a range that `accept` approves, or None; repair from it.

    The repair happens only when the accepted candidate's whole stripe is
    consistent (P and Q match the data, or every mirror copy is equal), so
    bytes outside the range are vouched for by the redundancy. Each strip
    that differs from the consistent stripe is rewritten and counted as a
    checksum error against its member. Each checksum that differs is
    corrected in the map, so the next commit records it. A read-only array
    counts but writes nothing; RAID0 has no redundancy to repair from.
    """
    with array.lock:
        array.io.flush()
        written_at, checksums, lost = array._entry(stripe)
        for candidate in range_candidates(array, stripe, offset, length, written_at, lost):
            if not accept(candidate.data):
                continue
            log.warning(
                "range_recovered",
                array=str(array.uuid),
                stripe=stripe,
                erased=list(candidate.erased),
            )
            _repair(array, stripe, candidate, checksums, written_at)
            return candidate.data
        return None


def _repair(
    array: Array, stripe: int, candidate: Candidate, checksums: list[int], written_at: int
) -> None:
    if array.codec.level is Level.RAID0:
        return
    if not array.codec.verify(stripe, candidate.stripe_strips).ok:
        log.warning("range_recovered_stripe_inconsistent", array=str(array.uuid), stripe=stripe)
        return
    for role, strip in enumerate(candidate.stripe_strips):
        slot = array.slots[role]
        on_disk = candidate.read[role]
        differs = on_disk is not None and bytes(on_disk) != bytes(strip)
        if differs:
            slot.counters.checksum += 1
        if on_disk is None or array.read_only or not slot.holds(stripe, written_at):
            continue
        if differs and not array.io.rewrite_strip(slot, stripe, bytes(strip)):
            continue
        checksum = strip_checksum(strip)
        if checksum != checksums[role]:
            array.record_checksum(stripe, role, checksum)
