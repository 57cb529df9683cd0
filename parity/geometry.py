"""Stripe geometry: which member stores each data strip, P and Q of a stripe.

A stripe is one strip per member. Logical data strips are numbered across
the array in order, ``data_strips`` per stripe, so logical strip ``s`` is
data strip ``s % data_strips`` of stripe ``s // data_strips``.

Placement per level, for ``n`` members and stripe number ``s``:

* RAID0: data strip ``i`` on member ``i``.
* RAID1: one data strip per stripe, on every member.
* RAID10: data strip ``i`` on members ``2i`` and ``2i + 1`` (two copies on
  neighbouring members, as the Linux md "near 2" layout with an even count).
* RAID5, left-symmetric as in Linux md: P on member ``n - 1 - s % n``, data
  strip ``i`` on member ``(P + 1 + i) % n``. Parity moves one member to the
  left each stripe and the data starts right after it, so consecutive
  logical strips fall on consecutive members.
* RAID6, the same rotation with Q on the member after P: P on
  ``n - 1 - s % n``, Q on ``(P + 1) % n``, data strip ``i`` on
  ``(P + 2 + i) % n`` (Linux md's RAID6 left-symmetric layout).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from parity.errors import GeometryError

MIN_STRIP_SIZE = 4096
"""Smallest strip size in bytes; every strip size is a power of two at least this large."""

MAX_RAID6_DATA_STRIPS = 255
"""g = 2 has 255 distinct powers in GF(2^8), so Q distinguishes at most 255 data strips."""


class Level(enum.IntEnum):
    """RAID level of an array."""

    RAID0 = 0
    RAID1 = 1
    RAID5 = 5
    RAID6 = 6
    RAID10 = 10


def to_level(level: Level | int) -> Level:
    """Convert an int to a Level.

    Args:
        level: a Level or its number (0, 1, 5, 6 or 10).

    Returns:
        The Level.

    Raises:
        GeometryError: ``level`` is not one of the supported levels.
    """
    try:
        return Level(level)
    except ValueError:
        supported = ", ".join(str(int(member)) for member in Level)
        raise GeometryError(f"RAID level must be one of {supported}; got {level!r}") from None


def check_member_count(level: Level, members: int) -> None:
    """Check that ``members`` is a legal member count for ``level``.

    Args:
        level: the RAID level.
        members: number of members (strips per stripe).

    Raises:
        GeometryError: the count breaks the level's rule; the message states
            the rule and the count given.
    """
    if level is Level.RAID0 and members < 2:
        raise GeometryError(f"RAID0 needs at least 2 members; got {members}")
    if level is Level.RAID1 and members < 2:
        raise GeometryError(f"RAID1 needs at least 2 members; got {members}")
    if level is Level.RAID5 and members < 3:
        raise GeometryError(f"RAID5 needs at least 3 members; got {members}")
    if level is Level.RAID6 and members < 4:
        raise GeometryError(f"RAID6 needs at least 4 members; got {members}")
    if level is Level.RAID6 and members > MAX_RAID6_DATA_STRIPS + 2:
        raise GeometryError(
            f"RAID6 takes at most {MAX_RAID6_DATA_STRIPS + 2} members "
            f"({MAX_RAID6_DATA_STRIPS} data strips, P and Q); got {members}"
        )
    if level is Level.RAID10 and (members < 4 or members % 2):
        raise GeometryError(f"RAID10 needs an even number of members, at least 4; got {members}")


def check_strip_size(strip_size: int) -> None:
    """Check that ``strip_size`` is a power of two of at least 4 KiB.

    Args:
        strip_size: strip size in bytes.

    Raises:
        GeometryError: the size is not a power of two or is below 4096 bytes.
    """
    if strip_size < MIN_STRIP_SIZE or strip_size & (strip_size - 1):
        raise GeometryError(
            f"strip size must be a power of two of at least {MIN_STRIP_SIZE} bytes; "
            f"got {strip_size}"
        )


@dataclass(frozen=True)
class StripeLayout:
    """Placement of one stripe's strips on the members.

    Attributes:
        stripe: stripe number.
        data: for each logical data strip of the stripe, the members holding it
            (one for RAID0, 5 and 6; every member for RAID1; two neighbours for RAID10).
        p: member holding P (RAID5, RAID6), else None.
        q: member holding Q (RAID6), else None.
    """

    stripe: int
    data: tuple[tuple[int, ...], ...]
    p: int | None
    q: int | None

    def strip_members(self) -> tuple[int, ...]:
        """List the members in the logical order that ``reconstruct`` and ``verify`` take.

        Returns:
            RAID0, RAID5 and RAID6: the data strips' members, then P's and Q's
            member. RAID1 and RAID10: every member, in member order (for RAID10
            each data strip's two copies side by side).
        """
        members = [member for holders in self.data for member in holders]
        members += [member for member in (self.p, self.q) if member is not None]
        return tuple(members)


@dataclass(frozen=True)
class StripLocation:
    """Location of one logical data strip.

    Attributes:
        stripe: stripe number.
        index: data strip index within the stripe.
        members: members holding the strip.
    """

    stripe: int
    index: int
    members: tuple[int, ...]


@dataclass(frozen=True)
class Geometry:
    """Shape of an array: level, member count and strip size, validated.

    Args:
        level: RAID level, as a Level or its number.
        members: number of members.
        strip_size: bytes per strip, a power of two of at least 4096.

    Raises:
        GeometryError: an invalid level, member count or strip size; the message
            states the rule and the value given.
    """

    level: Level
    members: int
    strip_size: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "level", to_level(self.level))
        check_member_count(self.level, self.members)
        check_strip_size(self.strip_size)

    @property
    def data_strips(self) -> int:
        """Data strips per stripe: RAID0 n, RAID1 1, RAID5 n-1, RAID6 n-2, RAID10 n/2."""
        n = self.members
        return {
            Level.RAID0: n,
            Level.RAID1: 1,
            Level.RAID5: n - 1,
            Level.RAID6: n - 2,
            Level.RAID10: n // 2,
        }[self.level]

    @property
    def tolerance(self) -> int:
        """Members that may be lost in the worst case: RAID0 0, RAID1 n-1, RAID5 1, RAID6 2, RAID10 1."""  # noqa: E501
        return {
            Level.RAID0: 0,
            Level.RAID1: self.members - 1,
            Level.RAID5: 1,
            Level.RAID6: 2,
            Level.RAID10: 1,
        }[self.level]

    @property
    def stripe_data_size(self) -> int:
        """Data bytes per stripe (data strips times strip size)."""
        return self.data_strips * self.strip_size

    def layout(self, stripe: int) -> StripeLayout:
        """Place the strips of one stripe on the members.

        Args:
            stripe: stripe number, 0 or more.

        Returns:
            The members holding each data strip, P and Q.

        Raises:
            GeometryError: ``stripe`` is negative.
        """
        if stripe < 0:
            raise GeometryError(f"stripe number must be 0 or more; got {stripe}")
        n = self.members
        level = self.level
        if level is Level.RAID0:
            return StripeLayout(stripe, tuple((i,) for i in range(n)), None, None)
        if level is Level.RAID1:
            return StripeLayout(stripe, (tuple(range(n)),), None, None)
        if level is Level.RAID10:
            pairs = tuple((2 * i, 2 * i + 1) for i in range(n // 2))
            return StripeLayout(stripe, pairs, None, None)
        p = n - 1 - stripe % n
        if level is Level.RAID5:
            data = tuple(((p + 1 + i) % n,) for i in range(n - 1))
            return StripeLayout(stripe, data, p, None)
        q = (p + 1) % n
        data = tuple(((p + 2 + i) % n,) for i in range(n - 2))
        return StripeLayout(stripe, data, p, q)

    def locate(self, logical_strip: int) -> StripLocation:
        """Find the stripe, index and members of a logical data strip.

        Args:
            logical_strip: logical data strip number, 0 or more.

        Returns:
            Its stripe, its index within the stripe and the members holding it.

        Raises:
            GeometryError: ``logical_strip`` is negative.
        """
        if logical_strip < 0:
            raise GeometryError(f"logical strip number must be 0 or more; got {logical_strip}")
        stripe, index = divmod(logical_strip, self.data_strips)
        return StripLocation(stripe, index, self.layout(stripe).data[index])

    def survives(self, missing: Iterable[int]) -> bool:
        """Tell whether every data strip stays recoverable with these members missing.

        Args:
            missing: member indices that are missing (duplicates are ignored).

        Returns:
            True when every data strip of every stripe can still be read or
            rebuilt. RAID10 survives unless both members of a pair are gone.

        Raises:
            GeometryError: a member index is outside ``0 .. members - 1``.
        """
        gone = set(missing)
        for member in gone:
            if not 0 <= member < self.members:
                raise GeometryError(f"member index must be in 0..{self.members - 1}; got {member}")
        if self.level is Level.RAID10:
            return not any(2 * i in gone and 2 * i + 1 in gone for i in range(self.members // 2))
        return len(gone) <= self.tolerance
