"""A fault-injecting member for tests: errors, bit flips, vanishing, power loss.

It wraps a real image file. Every write since the last fsync is kept in an
undo log (old bytes and new bytes), so `power_loss` can put the file back
as a disk without a write cache flush would leave it: each unsynced write
either dropped, or torn at a sector boundary (the first sectors new, the rest
old).
"""

from __future__ import annotations

import errno
import random
from dataclasses import dataclass, field

from raidd.array.member import Member, MemberIOError, MemberVanishedError, open_member

SECTOR = 512


@dataclass
class _UnsyncedWrite:
    offset: int
    old: bytes
    new: bytes


@dataclass
class FaultPlan:
    """Which faults a FaultyMember injects; tests change it while the array runs."""

    read_errors: list[tuple[int, int]] = field(default_factory=list)
    write_errors: list[tuple[int, int]] = field(default_factory=list)
    transient_read_errors: int = 0
    fail_fsync: bool = False
    vanished: bool = False


def _overlaps(ranges: list[tuple[int, int]], offset: int, length: int) -> bool:
    return any(start < offset + length and offset < end for start, end in ranges)


class FaultyMember(Member):
    """A Member whose reads, writes and fsyncs fail where its FaultPlan says."""

    def __init__(self, inner: Member) -> None:
        super().__init__(inner.path, inner.fd, inner.size, inner.identity, inner.writable)
        self.plan = FaultPlan()
        self.unsynced: list[_UnsyncedWrite] = []
        self.reads = 0
        self.writes = 0

    @classmethod
    def open(cls, path: str, *, writable: bool = True, claim: bool | None = None) -> FaultyMember:
        return cls(open_member(path, writable=writable, claim=claim))

    def fail_reads(self, offset: int, length: int) -> None:
        """Make every read that touches [offset, offset + length) fail with EIO."""
        self.plan.read_errors.append((offset, offset + length))

    def fail_writes(self, offset: int, length: int) -> None:
        """Make every write that touches [offset, offset + length) fail with EIO."""
        self.plan.write_errors.append((offset, offset + length))

    def vanish(self) -> None:
        """Make every later operation fail as if the device was unplugged."""
        self.plan.vanished = True

    def flip_bits(self, offset: int, mask: int = 0x01, count: int = 1) -> None:
        """XOR `mask` into `count` bytes at `offset`, behind the array's back."""
        old = super().pread(count, offset)
        super().pwrite(bytes(b ^ mask for b in old), offset)

    def _check(self) -> None:
        if self.plan.vanished:
            raise MemberVanishedError(f"member {self.path} vanished (injected)")

    def pread(self, length: int, offset: int) -> bytes:
        self._check()
        self.reads += 1
        if self.plan.transient_read_errors > 0:
            self.plan.transient_read_errors -= 1
            raise MemberIOError(
                f"injected transient read error at offset {offset} of member {self.path}",
                path=self.path,
                offset=offset,
                errno_value=errno.EIO,
            )
        if _overlaps(self.plan.read_errors, offset, length):
            raise MemberIOError(
                f"injected read error at offset {offset} of member {self.path}",
                path=self.path,
                offset=offset,
                errno_value=errno.EIO,
            )
        return super().pread(length, offset)

    def pread_into(self, buffer: bytearray | memoryview, offset: int) -> None:
        # Through pread, so that every injected fault applies here too.
        memoryview(buffer)[:] = self.pread(len(buffer), offset)

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        self._check()
        self.writes += 1
        if _overlaps(self.plan.write_errors, offset, len(data)):
            raise MemberIOError(
                f"injected write error at offset {offset} of member {self.path}",
                path=self.path,
                offset=offset,
                errno_value=errno.EIO,
            )
        new = bytes(data)
        available = max(0, min(len(new), self.size - offset))
        old = super().pread(available, offset) if available else b""
        self.unsynced.append(_UnsyncedWrite(offset, old, new))
        super().pwrite(new, offset)

    def fsync(self) -> None:
        self._check()
        if self.plan.fail_fsync:
            raise MemberIOError(
                f"injected fsync failure on member {self.path}",
                path=self.path,
                offset=0,
                errno_value=errno.EIO,
            )
        super().fsync()
        self.unsynced.clear()

    def power_loss(self, rng: random.Random, *, torn: bool = True) -> int:
        """Undo unsynced writes as a power cut would, then vanish.

        Each unsynced write is kept, dropped, or (with `torn`) cut at a random
        sector boundary, chosen by `rng`. Returns how many writes were undone
        in whole or part.

        NOTE: later writes to the same bytes are undone first, so an older
        write that is kept still shows its own bytes, as on a real disk.
        """
        undone = 0
        for write in reversed(self.unsynced):
            choice = rng.choice(("keep", "drop", "torn") if torn else ("keep", "drop"))
            if choice == "keep":
                continue
            undone += 1
            if choice == "drop" or len(write.old) <= SECTOR:
                Member.pwrite(self, write.old, write.offset)
                continue
            cut = rng.randrange(1, len(write.old) // SECTOR + 1) * SECTOR
            Member.pwrite(self, write.old[cut:], write.offset + cut)
        self.unsynced.clear()
        Member.fsync(self)
        self.plan.vanished = True
        return undone
