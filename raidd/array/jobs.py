"""Long array jobs: rebuild, resync and scrub, with progress, rate limits and checkpoints.

Each job walks the allocated stripes in order, one stripe per `step()`
under the array lock, so reads and commits interleave with it. Every
`checkpoint_interval` seconds it records the first unfinished stripe in the
superblocks (a superblock-only commit), and a restart resumes there.

Rate limits follow md's `sync_speed_min` / `sync_speed_max`: the job runs at
up to the maximum rate, and slows to the minimum while foreground reads or
writes happened within the last second. Both can be changed while it runs.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

import structlog

from raidd.array.array import Array
from raidd.array.codec import strip_checksum
from raidd.array.stripeio import Slot
from raidd.array.superblock import Checkpoint, CheckpointKind, MemberState
from raidd.errors import ArrayError, IntegrityError, MemberError

log = structlog.get_logger(__name__)

MiB = 1024 * 1024
DEFAULT_MIN_RATE = 1.0
DEFAULT_MAX_RATE = 0.0
READ_RETRIES = 3
FOREGROUND_WINDOW = 1.0


@dataclass(frozen=True)
class Progress:
    """How far a job is: stripes done of total, MiB/s so far, estimated seconds left."""

    done: int
    total: int
    rate_mib_s: float
    eta_seconds: float | None


@dataclass
class StripeError:
    stripe: int
    role: int
    path: str
    kind: str


@dataclass
class JobResult:
    """What a job found: one StripeError per bad strip, and stripes recorded as lost."""

    errors: int = 0
    repaired: int = 0
    lost_stripes: list[int] = field(default_factory=list)
    details: list[StripeError] = field(default_factory=list)


class Job:
    """Base of rebuild, resync and scrub: stripe walk, rates, progress, checkpoints."""

    kind = CheckpointKind.NONE

    def __init__(
        self,
        array: Array,
        *,
        start: int = 0,
        min_rate: float = DEFAULT_MIN_RATE,
        max_rate: float = DEFAULT_MAX_RATE,
        checkpoint_interval: float = 5.0,
    ) -> None:
        self.array = array
        self.min_rate = min_rate
        self.max_rate = max_rate
        self.checkpoint_interval = checkpoint_interval
        self.result = JobResult()
        with array.lock:
            stripes = array.map.allocated_stripes()
            self.stripes = stripes[stripes >= start]
        self.index = 0
        self._bytes = 0
        self._started = time.monotonic()
        self._last_checkpoint = self._started
        self.stop_event = threading.Event()

    def set_rates(self, min_rate: float, max_rate: float) -> None:
        """Change the rate limits in MiB/s (0 as maximum means unlimited)."""
        if min_rate < 0 or max_rate < 0 or (max_rate and min_rate > max_rate):
            raise ArrayError(f"invalid rate limits: minimum {min_rate}, maximum {max_rate} MiB/s")
        self.min_rate, self.max_rate = min_rate, max_rate

    def progress(self) -> Progress:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = self._bytes / MiB / elapsed
        done, total = self.index, len(self.stripes)
        per_stripe = elapsed / done if done else None
        eta = per_stripe * (total - done) if per_stripe is not None else None
        return Progress(done, total, rate, eta)

    @property
    def finished(self) -> bool:
        return self.index >= len(self.stripes)

    def next_stripe(self) -> int:
        if self.finished:
            return self.array.stripe_count
        return int(self.stripes[self.index])

    def step(self) -> bool:
        """Process the next stripe; return False once every stripe is done."""
        if self.finished:
            return False
        stripe = int(self.stripes[self.index])
        with self.array.lock:
            if self.array.map.is_allocated(stripe):
                self._bytes += self.process(stripe)
            self.index += 1
            self._after_stripe(stripe)
        self._throttle()
        if time.monotonic() - self._last_checkpoint >= self.checkpoint_interval:
            self.write_checkpoint()
        return not self.finished

    def run(self) -> JobResult:
        """Run to the end (or until `stop_event` is set), then finish the job."""
        while not self.stop_event.is_set() and self.step():
            pass
        if self.finished:
            self.finish()
        else:
            self.write_checkpoint()
        return self.result

    def _throttle(self) -> None:
        foreground = time.monotonic() - self.array.last_foreground_io < FOREGROUND_WINDOW
        rate = self.min_rate if foreground and self.min_rate else self.max_rate
        if not rate:
            return
        ahead = self._bytes / (rate * MiB) - (time.monotonic() - self._started)
        if ahead > 0:
            self.stop_event.wait(min(ahead, 1.0))

    def checkpoint(self) -> Checkpoint | None:
        return None

    def write_checkpoint(self) -> None:
        """Record the first unfinished stripe in the superblocks."""
        self._last_checkpoint = time.monotonic()
        checkpoint = self.checkpoint()
        if checkpoint is None or self.array.read_only:
            return
        with self.array.lock:
            self.array.checkpoint = checkpoint
            self.array.commit_state()
        log.info("job_checkpoint", job=self.kind.name.lower(), next_stripe=checkpoint.next_stripe)

    def process(self, stripe: int) -> int:
        raise NotImplementedError

    def _after_stripe(self, stripe: int) -> None:
        return

    def finish(self) -> None:
        return


class Rebuild(Job):
    """Write a REBUILDING member's strips from the survivors.

    A full rebuild visits every allocated stripe; a resync (`resync_base`
    above 0) only those written after the member's last in-sync commit.
    """

    kind = CheckpointKind.REBUILD

    def __init__(self, array: Array, slot: Slot, **kwargs: object) -> None:
        if slot.state is not MemberState.REBUILDING or slot.member is None:
            raise ArrayError(f"role {slot.role} has no member being rebuilt")
        start = slot.rebuild_next
        super().__init__(array, start=start, **kwargs)  # type: ignore[arg-type]
        self.slot = slot
        if slot.resync_base:
            self.kind = CheckpointKind.RESYNC
            written = array.map.entries["written_at"][self.stripes]
            self.stripes = self.stripes[written > slot.resync_base]

    def checkpoint(self) -> Checkpoint:
        since = (
            self.slot.resync_base
            if self.kind is CheckpointKind.RESYNC
            else self.slot.rebuild_since
        )
        return Checkpoint(
            self.kind, self.slot.role, self.slot.member_uuid, self.next_stripe(), since
        )

    def _after_stripe(self, stripe: int) -> None:
        self.slot.rebuild_next = stripe + 1

    def process(self, stripe: int) -> int:
        io = self.array.io
        entry = self.array.map.entries[stripe]
        written_at, lost = int(entry["written_at"]), int(entry["lost"])
        checksums = [int(c) for c in entry["checksums"]]
        if self.slot.holds(stripe, written_at):
            return 0
        full = None
        for attempt in range(READ_RETRIES):
            try:
                full = io.reconstruct_stripe(stripe, written_at, checksums, lost, repair=True)
                break
            except IntegrityError as error:
                log.warning(
                    "rebuild_read_retry", stripe=stripe, attempt=attempt + 1, error=str(error)
                )
        if full is None:
            self._record_lost(stripe, checksums, written_at)
            return 0
        assert self.slot.member is not None
        try:
            self.slot.member.pwrite(full[self.slot.role], io.strip_offset(stripe))
        except MemberError as error:
            self.slot.counters.write += 1
            self.array._member_failed(self.slot, f"rebuild write failed: {error}")
            raise ArrayError(f"rebuild onto {self.slot.path} failed: {error}") from error
        return io.strip_size * (len(self.array.slots) - 1)

    def _record_lost(self, stripe: int, checksums: list[int], written_at: int) -> None:
        mask = 1 << self.slot.role
        for slot in self.array.slots:
            if slot is self.slot:
                continue
            strip = self.array.io.read_strip(slot, stripe, written_at)
            if strip is None or strip_checksum(strip) != checksums[slot.role]:
                mask |= 1 << slot.role
        self.array.map.set_lost(stripe, mask)
        self.array._map_changed = True
        self.result.lost_stripes.append(stripe)
        self.result.errors += 1
        log.error("stripe_lost", stripe=stripe, roles_mask=mask, member=self.slot.path)

    def finish(self) -> None:
        with self.array.lock:
            self.slot.state = MemberState.ACTIVE
            self.slot.rebuild_next = 0
            self.slot.resync_base = 0
            self.array.checkpoint = Checkpoint()
            # NOTE: this commit also references stripes the store wrote but has
            # not committed yet; the store commits from the same thread in the daemon.
            self.array.commit(self.array.metadata_root)
        log.info(
            "rebuild_finished",
            member=self.slot.path,
            role=self.slot.role,
            lost=len(self.result.lost_stripes),
        )


class Scrub(Job):
    """Read every allocated stripe, check strip checksums and parity, repair what is wrong."""

    kind = CheckpointKind.SCRUB

    def __init__(self, array: Array, *, repair: bool = True, **kwargs: object) -> None:
        super().__init__(array, **kwargs)  # type: ignore[arg-type]
        self.repair = repair and not array.read_only

    def checkpoint(self) -> Checkpoint | None:
        if not self.repair:
            return None
        return Checkpoint(CheckpointKind.SCRUB, -1, uuid.UUID(int=0), self.next_stripe(), 0)

    def process(self, stripe: int) -> int:
        io = self.array.io
        entry = self.array.map.entries[stripe]
        written_at, lost = int(entry["written_at"]), int(entry["lost"])
        checksums = [int(c) for c in entry["checksums"]]
        strips: list[bytes | None] = []
        for slot in self.array.slots:
            strip = io.read_strip(slot, stripe, written_at)
            if strip is not None and strip_checksum(strip) != checksums[slot.role]:
                slot.counters.checksum += 1
                self._report(stripe, slot, "checksum")
                strip = None
            elif strip is None and slot.holds(stripe, written_at):
                self._report(stripe, slot, "read")
            strips.append(strip)
        bad = [
            s.role
            for s in self.array.slots
            if strips[s.role] is None and s.holds(stripe, written_at)
        ]
        if bad:
            try:
                io.reconstruct_stripe(stripe, written_at, checksums, lost, repair=self.repair)
                self.result.repaired += len(bad) if self.repair else 0
            except IntegrityError as error:
                log.error("scrub_unrecoverable", stripe=stripe, error=str(error))
        elif all(s is not None for s in strips):
            self._check_parity(stripe, [s for s in strips if s is not None])
        return io.strip_size * len(self.array.slots)

    def _check_parity(self, stripe: int, strips: list[bytes]) -> None:
        verdict = self.array.codec.verify(stripe, strips)
        if verdict.ok:
            return
        # Every strip matches its checksum, yet parity disagrees: the map entry or a
        # checksum collision is wrong. RAID6 syndromes name the strip; nothing is rewritten.
        role = -1
        if verdict.bad_index is not None:
            role = self.array.codec.role_of_logical(stripe, verdict.bad_index)
        self.result.errors += 1
        path = self.array.slots[role].path if role >= 0 else ""
        self.result.details.append(StripeError(stripe, role, path, "parity"))
        log.error("scrub_parity_mismatch", stripe=stripe, role=role)

    def _report(self, stripe: int, slot: Slot, kind: str) -> None:
        self.result.errors += 1
        self.result.details.append(StripeError(stripe, slot.role, slot.path, kind))
        log.warning("scrub_error", stripe=stripe, role=slot.role, member=slot.path, kind=kind)

    def finish(self) -> None:
        if self.repair and self.array.checkpoint.kind is CheckpointKind.SCRUB:
            with self.array.lock:
                self.array.checkpoint = Checkpoint()
                self.array.commit_state()
        log.info("scrub_finished", errors=self.result.errors, repaired=self.result.repaired)


def scrub(array: Array, *, repair: bool = True) -> JobResult:
    """Scrub the whole array in the calling thread and return what it found."""
    job = Scrub(array, repair=repair, min_rate=0, max_rate=0, checkpoint_interval=float("inf"))
    return job.run()
