"""Stripe codec: split a stripe's data into per-member strips and put them back.

This is the only module of the engine that speaks parity's logical strip
order (RAID5 [D0..Dk-1, P], RAID6 [D0..Dk-1, P, Q], RAID1 one copy per
member, RAID10 [D0 copy a, D0 copy b, D1 a, ...], RAID0 [D0..Dk-1]); the rest
of the engine indexes strips by role (member position).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from isal import isal_zlib

import parity
from parity import Geometry, Level


class UnrecoverableStripeError(Exception):
    """More strips of a stripe are missing than its level can reconstruct."""

    def __init__(self, stripe: int, missing: Sequence[int]) -> None:
        super().__init__(f"stripe {stripe}: roles {list(missing)} missing, beyond the tolerance")
        self.stripe = stripe
        self.missing = tuple(missing)


def strip_checksum(strip: bytes | bytearray | memoryview | np.ndarray) -> int:
    """Return a strip's checksum: its CRC-32 (as zlib computes it), as an integer.

    CRC-32 catches every error burst up to 32 bits and misses random damage
    with odds of 2^-32 per bad strip; Btrfs checksums its data with CRC-32C
    for the same job. It does not authenticate: sealed objects carry AES-GCM
    tags for that. ISA-L's CRC-32 (`isal_zlib.crc32`) returns the same values
    as `zlib.crc32` and ran 3.4 times faster over 64 KiB strips on the
    benchmark machine (8.2 against 2.4 GB/s, docs/BENCHMARKS.md), which is
    what lets scrub and rebuild keep up with the devices.
    """
    return int(isal_zlib.crc32(strip))


class StripeCodec:
    """Encode and decode the strips of one stripe for one geometry."""

    def __init__(self, geometry: Geometry) -> None:
        self.geometry = geometry
        self.level = Level(geometry.level)
        self.members = geometry.members
        self.strip_size = geometry.strip_size

    def logical_roles(self, stripe: int) -> list[int]:
        """Return, for each position of parity's logical order, the role holding it."""
        layout = self.geometry.layout(stripe)
        if self.level in (Level.RAID1, Level.RAID10):
            return [member for holders in layout.data for member in holders]
        roles = [holders[0] for holders in layout.data]
        if layout.p is not None:
            roles.append(layout.p)
        if layout.q is not None:
            roles.append(layout.q)
        return roles

    def data_roles(self, stripe: int) -> list[tuple[int, ...]]:
        """Return, for each data strip of the stripe, the roles holding a copy."""
        return [tuple(holders) for holders in self.geometry.layout(stripe).data]

    def encode(
        self, stripe: int, data: bytes | bytearray | memoryview
    ) -> list[bytes | memoryview]:
        """Split `data` (at most one stripe's data, zero padded) into strips by role.

        The data is copied once, so the caller may reuse its buffer; data
        strips are views into that copy.
        """
        size = self.geometry.stripe_data_size
        if len(data) > size:
            raise ValueError(f"stripe data is {len(data)} bytes; a stripe holds {size}")
        buffer = memoryview(bytes(data) + bytes(size - len(data)))
        pieces = [
            buffer[i * self.strip_size : (i + 1) * self.strip_size]
            for i in range(self.geometry.data_strips)
        ]
        layout = self.geometry.layout(stripe)
        strips: list[bytes | memoryview] = [b""] * self.members
        for index, holders in enumerate(layout.data):
            for member in holders:
                strips[member] = pieces[index]
        if layout.p is not None and layout.q is not None:
            p, q = parity.encode_pq(pieces)
            strips[layout.p] = p.tobytes()
            strips[layout.q] = q.tobytes()
        elif layout.p is not None:
            strips[layout.p] = parity.encode_p(pieces).tobytes()
        return strips

    def reconstruct(self, stripe: int, strips: Sequence[bytes | None]) -> list[bytes]:
        """Fill in the missing (None) strips of a stripe, by role.

        Raises:
            UnrecoverableStripeError: more strips missing than the stripe can lose.
        """
        roles = self.logical_roles(stripe)
        missing = [role for role in range(self.members) if strips[role] is None]
        if self.level is Level.RAID0:
            if missing:
                raise UnrecoverableStripeError(stripe, missing)
            return [bytes(s) for s in strips if s is not None]
        logical = [strips[role] for role in roles]
        try:
            filled = parity.reconstruct(self.level, logical)
        except parity.TooManyErasures:
            raise UnrecoverableStripeError(stripe, missing) from None
        result: list[bytes] = [b""] * self.members
        for position, role in enumerate(roles):
            result[role] = bytes(filled[position])
        return result

    def verify(self, stripe: int, strips: Sequence[bytes]) -> parity.Verification:
        """Check parity (or mirror copies) of a full stripe given by role."""
        roles = self.logical_roles(stripe)
        return parity.verify(self.level, [strips[role] for role in roles])

    def role_of_logical(self, stripe: int, position: int) -> int:
        """Return the role at a position of parity's logical order."""
        return self.logical_roles(stripe)[position]

    def join(self, stripe: int, strips: Sequence[bytes]) -> bytes:
        """Concatenate the data strips of a full stripe, given by role."""
        return b"".join(strips[holders[0]] for holders in self.data_roles(stripe))
