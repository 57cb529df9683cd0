"""Long array jobs (rebuild and resync here, scrub in scrub.py): progress, rates, checkpoints.

Each job walks the allocated stripes in order, one run of consecutive
stripes (8 MiB per member) per `step()` under the array lock, so reads and
commits interleave with it. One reader thread per member fetches the next
two runs meanwhile (`readahead.RunReader`), and the checksums and parity of
a run are computed on the member pool, so the work spreads over the cores.
Every `checkpoint_interval` seconds it records the first unfinished stripe in the
superblocks (a superblock-only commit), and a restart resumes there.

Rate limits follow md's `sync_speed_min` / `sync_speed_max`: the job runs at
up to the maximum rate, and slows to the minimum while foreground reads or
writes happened within the last second. Both can be changed while it runs.
A rate counts per member, as md's does: the strips of one member that the
job got through per second (a stripe counts once, one strip size, whatever
the number of members). The progress rate is measured the same way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np
import structlog

from parity import Level
from raidd.array.array import Array
from raidd.array.codec import strip_checksum
from raidd.array.readahead import RunReader
from raidd.array.stripeio import Slot
from raidd.array.superblock import Checkpoint, CheckpointKind, MemberState
from raidd.errors import ArrayError, IntegrityError, MemberError

log = structlog.get_logger(__name__)

MiB = 1024 * 1024
DEFAULT_MIN_RATE = 1.0
DEFAULT_MAX_RATE = 0.0
READ_RETRIES = 3
# A job reads up to this many bytes per member with one pread.
RUN_BYTES = 8 * MiB
# Runs read ahead of the one being checked. NOTE: a job holds READ_AHEAD_RUNS + 1
# buffers of RUN_BYTES per member read, plus one or two for the XOR (about 100 MiB on
# four members).
READ_AHEAD_RUNS = 2
FOREGROUND_WINDOW = 1.0
# The maximum single wait of a throttled job, so that a cancel or a new limit acts soon.
THROTTLE_SLICE = 0.5
# Seconds of unused rate a throttled job may catch up on at once (after a pause).
BURST_SECONDS = 1.0


class RateLimiter:
    """Paces work at up to `rate` MiB/s, counted from the last change of the rate.

    Args:
        clock: the monotonic clock in seconds (tests pass their own).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.rate = 0.0
        self._since = clock()
        self._done = 0

    def set_rate(self, rate: float) -> None:
        """Use `rate` MiB/s from now on (0: unlimited).

        Work the old rate had not yet paid for by waiting is carried over, so
        a switch between the minimum and the maximum never skips a wait;
        work done while unlimited is not owed.
        """
        if rate == self.rate:
            return
        now = self.clock()
        owed = 0.0
        if self.rate:
            self._forget_idle_time()
            owed = max(0.0, self._done - (now - self._since) * self.rate * MiB)
        self.rate = rate
        self._since = now
        self._done = int(owed)

    def add(self, size: int) -> None:
        """Count `size` bytes of work done."""
        self._forget_idle_time()
        self._done += size

    def delay(self) -> float:
        """Return the seconds to wait before more work keeps the rate (0: go on)."""
        if not self.rate:
            return 0.0
        self._forget_idle_time()
        return max(0.0, self._done / (self.rate * MiB) - (self.clock() - self._since))

    def _forget_idle_time(self) -> None:
        """Keep at most BURST_SECONDS of unused rate: a pause is not saved up for a burst."""
        if not self.rate:
            return
        due = self._done / (self.rate * MiB)
        elapsed = self.clock() - self._since
        if elapsed - due > BURST_SECONDS:
            self._since += elapsed - due - BURST_SECONDS


@dataclass(frozen=True)
class Progress:
    """How far a job is: stripes done of total, MiB/s so far, estimated seconds left."""

    done: int
    total: int
    rate_mib_s: float
    eta_seconds: float | None


# What a StripeError's kind means, for the lines people read.
ERROR_KINDS = {
    "checksum": "checksum mismatch",
    "read": "read error",
    "parity": "parity mismatch",
    "missing": "no member",
}


@dataclass
class StripeError:
    """One bad strip: its stripe, role (-1: not known), member path and kind of fault."""

    stripe: int
    role: int
    path: str
    kind: str

    def describe(self) -> str:
        """Return one line for people: stripe, member and what is wrong."""
        where = f"role {self.role} ({self.path or 'no member'})" if self.role >= 0 else "parity"
        return f"stripe {self.stripe}: {where}: {ERROR_KINDS.get(self.kind, self.kind)}"

    def to_json(self) -> dict[str, object]:
        return {"stripe": self.stripe, "role": self.role, "path": self.path, "kind": self.kind}


@dataclass
class JobResult:
    """A job's findings: one StripeError per bad strip, and the stripes recorded as lost."""

    errors: int = 0
    repaired: int = 0
    lost_stripes: list[int] = field(default_factory=list)
    details: list[StripeError] = field(default_factory=list)

    def lost_report(self) -> list[dict[str, object]]:
        """Return each lost stripe with the bad strips found in it, for JSON results."""
        return [
            {
                "stripe": int(stripe),
                "members": [d.to_json() for d in self.details if d.stripe == stripe],
            }
            for stripe in self.lost_stripes
        ]

    def describe_lost(self) -> list[str]:
        """Return one line per lost stripe naming the members whose strips are bad."""
        lines = []
        for stripe in self.lost_stripes:
            bad = [d for d in self.details if d.stripe == stripe and d.role >= 0]
            names = ", ".join(
                f"role {d.role} ({d.path or 'no member'}: {ERROR_KINDS.get(d.kind, d.kind)})"
                for d in bad
            )
            lines.append(
                f"stripe {stripe} is lost: {names or 'too many strips bad'}; more strips are "
                "bad than the level can reconstruct, so the data stored in this stripe cannot "
                "be read (raidd restore reports the files it held as lost)"
            )
        return lines


def _xor_runs(
    buffers: list[bytes | memoryview], out: np.ndarray | None = None
) -> bytes | memoryview:
    """Return the XOR of equal-length buffers (the buffer itself when there is one).

    With `out` (uint64, at least as long) the result is written there, so no
    buffer is allocated per run.
    """
    if len(buffers) == 1:
        return buffers[0]
    views = [np.frombuffer(data, dtype=np.uint64) for data in buffers]
    target = None if out is None else out[: views[0].size]
    result = np.bitwise_xor(views[0], views[1], out=target)
    for view in views[2:]:
        np.bitwise_xor(result, view, out=result)
    return memoryview(result).cast("B")


def _is_data(value: object) -> bool:
    """Tell whether a fetched run is data (not an error, not missing)."""
    return isinstance(value, bytes | bytearray | memoryview)


def _consecutive(stripes: list[int]) -> list[list[int]]:
    groups: list[list[int]] = []
    for stripe in stripes:
        if groups and groups[-1][-1] == stripe - 1:
            groups[-1].append(stripe)
        else:
            groups.append([stripe])
    return groups


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.array = array
        self.clock = clock
        self.min_rate = min_rate
        self.max_rate = max_rate
        self.checkpoint_interval = checkpoint_interval
        self.result = JobResult()
        with array.lock:
            stripes = array.map.allocated_stripes()
            self.stripes = stripes[stripes >= start]
        self.index = 0
        self.run_stripes = max(1, RUN_BYTES // array.io.strip_size)
        run_bytes = self.run_stripes * array.io.strip_size
        self._reader = RunReader(array.io, run_bytes, READ_AHEAD_RUNS)
        self._ahead_index = 0
        # Roles the read-ahead leaves out (a rebuild's target holds nothing to read).
        self.skip_roles: set[int] = set()
        # Scratch for a run's parity XOR, reused so that no run allocates one.
        self._scratch = np.empty(run_bytes // 8, dtype=np.uint64)
        self._fetched: dict[int, bytes | memoryview | MemberError] | None = None
        # Bytes per member got through: one strip size per stripe (the rates' measure).
        self._bytes = 0
        self._started = clock()
        self._last_checkpoint = self._started
        self.stop_event = threading.Event()
        self._limiter = RateLimiter(clock)
        self._limiter.set_rate(self.current_rate())

    def set_rates(self, min_rate: float, max_rate: float) -> None:
        """Change the rate limits in MiB/s (0 as maximum means unlimited)."""
        if min_rate < 0 or max_rate < 0 or (max_rate and min_rate > max_rate):
            raise ArrayError(f"invalid rate limits: minimum {min_rate}, maximum {max_rate} MiB/s")
        self.min_rate, self.max_rate = min_rate, max_rate

    def progress(self) -> Progress:
        elapsed = max(self.clock() - self._started, 1e-9)
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
        """Process the next run of consecutive stripes; return False once all are done."""
        if self.finished:
            return False
        with self.array.lock:
            self.array.io.flush()
            run = self._run_at(self.index)
            if not self._reader.queued:
                self._ahead_index = self.index
                self._fill_read_ahead()
            self._fetched = self._reader.take(run)  # type: ignore[assignment]
            if self._fetched is None:
                self._ahead_index = self.index + len(run)
            self._fill_read_ahead()
            live = [stripe for stripe in run if self.array.map.is_allocated(stripe)]
            if live == run:
                self.process_run(run)
            else:
                # A stripe was freed since the job started: the fetched run no longer fits.
                self._fetched = None
                for group in _consecutive(live):
                    self.process_run(group)
            done = len(run) * self.array.io.strip_size
            self._bytes += done
            self._limiter.add(done)
            self._fetched = None
            self.index += len(run)
            self._after_stripe(run[-1])
        self._throttle()
        if self.clock() - self._last_checkpoint >= self.checkpoint_interval:
            self.write_checkpoint()
        return not self.finished

    def _run_at(self, index: int) -> list[int]:
        """Return the consecutive stripes from position `index`, at most `_run_limit()`."""
        limit = self._run_limit()
        run = [int(self.stripes[index])]
        while (
            len(run) < limit
            and index + len(run) < len(self.stripes)
            and int(self.stripes[index + len(run)]) == run[-1] + 1
        ):
            run.append(run[-1] + 1)
        return run

    def _run_limit(self) -> int:
        """Return the stripes of one run: `run_stripes`, fewer under a rate limit.

        Under a limit a run contains at most THROTTLE_SLICE seconds of work
        per member. So the job reads in small steps between its waits, not in
        one burst of RUN_BYTES per member followed by a long pause.
        """
        rate = self._limiter.rate
        if not rate:
            return self.run_stripes
        slice_stripes = int(rate * MiB * THROTTLE_SLICE) // self.array.io.strip_size
        return max(1, min(self.run_stripes, slice_stripes))

    def _fill_read_ahead(self) -> None:
        """Queue runs from `_ahead_index` on until READ_AHEAD_RUNS are being read."""
        while self._reader.queued < READ_AHEAD_RUNS and self._ahead_index < len(self.stripes):
            run = self._run_at(self._ahead_index)
            self._reader.submit(run, self.skip_roles)
            self._ahead_index += len(run)

    def _fetched_for(self, run: list[int]) -> dict[int, bytes | memoryview | MemberError] | None:
        """Return the read-ahead data of this step (it always covers exactly `run`)."""
        return self._fetched

    def entries(self, run: list[int]) -> list[tuple[int, list[int], int]]:
        """Return (written_at, checksums, lost) of each stripe of a run."""
        rows = self.array.map.entries[run[0] : run[-1] + 1]
        return [
            (int(row["written_at"]), [int(c) for c in row["checksums"]], int(row["lost"]))
            for row in rows
        ]

    def process_run(self, run: list[int]) -> int:
        """Process consecutive stripes; return the bytes read."""
        return sum(self.process(stripe) for stripe in run)

    def run(self) -> JobResult:
        """Run to the end (or until `stop_event` is set), then finish the job."""
        try:
            while not self.stop_event.is_set() and self.step():
                pass
        finally:
            self._close()
        if self.finished:
            self.finish()
        else:
            self.write_checkpoint()
        return self.result

    def current_rate(self) -> float:
        """Return the limit in force now: the minimum during foreground I/O, else the maximum."""
        # NOTE: the array stamps foreground I/O with time.monotonic, not the job's clock.
        foreground = time.monotonic() - self.array.last_foreground_io < FOREGROUND_WINDOW
        return self.min_rate if foreground and self.min_rate else self.max_rate

    def _throttle(self) -> None:
        """Wait until the work done so far keeps the rate limit, in slices that see changes."""
        while not self.stop_event.is_set():
            self._limiter.set_rate(self.current_rate())
            delay = self._limiter.delay()
            if delay <= 0:
                return
            self.stop_event.wait(min(delay, THROTTLE_SLICE))

    def _close(self) -> None:
        """Stop the job's threads once the walk ends (or fails)."""
        self._reader.close()

    def checkpoint(self) -> Checkpoint | None:
        return None

    def write_checkpoint(self) -> None:
        """Record the first unfinished stripe in the superblocks."""
        self._last_checkpoint = self.clock()
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
        self.skip_roles = {slot.role}
        # A run rebuilt at once goes to the target from this thread, while the
        # next run is checked; it alternates between two XOR buffers.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rebuild-write")
        self._write: Future[None] | None = None
        self._outputs = [self._scratch, np.empty_like(self._scratch)]
        # The first stripe after the run whose write is in flight.
        self._next_after_write = 0
        array.io.write_barriers.append(self._let_write_finish)
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
        # Reads use the target's strips below rebuild_next, so it moves on
        # only once they are written.
        if self._write is None:
            self.slot.rebuild_next = stripe + 1
        else:
            self._next_after_write = stripe + 1

    def _let_write_finish(self) -> None:
        """Wait for the write in flight without acting on its outcome (the job does)."""
        write = self._write
        if write is not None:
            wait([write])

    def process_run(self, run: list[int]) -> int:
        io = self.array.io
        done = self._rebuild_run_at_once(run)
        if done is not None:
            return done
        rows = self.entries(run)
        strips, _faults, _buffers = io.read_run(
            run[0], [(w, c) for w, c, _ in rows], self._fetched_for(run)
        )
        rebuilt: list[tuple[int, bytes | memoryview]] = []
        for i, stripe in enumerate(run):
            written_at, checksums, lost = rows[i]
            if self.slot.holds(stripe, written_at):
                continue
            full = self._reconstruct(stripe, written_at, checksums, lost, strips[i])
            if full is not None:
                rebuilt.append((stripe, full[self.slot.role]))
        self._write_rebuilt(rebuilt)
        return io.strip_size * sum(len(known) for known in strips)

    def _sources(self) -> list[int] | None:
        """Return the roles whose strips give the target's by XOR (RAID5) or copy (mirrors)."""
        level = self.array.codec.level
        role = self.slot.role
        members = len(self.array.slots)
        if level is Level.RAID5:
            return [r for r in range(members) if r != role]
        if level is Level.RAID1:
            return [next(r for r in range(members) if r != role)]
        if level is Level.RAID10:
            return [role ^ 1]
        return None

    def _rebuild_run_at_once(self, run: list[int]) -> int | None:
        """Rebuild a whole run with one XOR (RAID5) or copy (mirrors) when every source is good.

        RAID5's lost strip is the XOR of all the other strips of its stripe,
        whichever of them is P, so a run of stripes is rebuilt as the XOR of
        the other members' runs. Returns the bytes read, or None when the
        per-stripe path is needed (a bad source strip, a lost mark, a stripe
        already held, a source member missing).
        """
        sources = self._sources()
        array, io = self.array, self.array.io
        if sources is None:
            return None
        if any(array.slots[r].state is not MemberState.ACTIVE for r in sources):
            return None
        rows = array.map.entries[run[0] : run[-1] + 1]
        if rows["lost"].any():
            return None
        if any(self.slot.holds(s, int(w)) for s, w in zip(run, rows["written_at"], strict=True)):
            return None
        fetched = self._fetched if self._fetched is not None else io.fetch_run(run[0], len(run))
        self._fetched = fetched
        buffers = {r: fetched[r] for r in sources if _is_data(fetched.get(r))}
        if len(buffers) < len(sources):
            return None
        size = io.strip_size

        def checksums(data: bytes | memoryview) -> list[int]:
            view = memoryview(data)
            return [strip_checksum(view[i * size : (i + 1) * size]) for i in range(len(run))]

        futures = {r: io.submit(checksums, buffers[r]) for r in sources}
        # The buffer of the write before last; the last write may still read the other.
        output = self._outputs[0]
        rebuilt = io.submit(_xor_runs, [buffers[r] for r in sources], output).result()
        target = io.submit(checksums, rebuilt)
        for r, future in futures.items():
            if not np.array_equal(
                np.array(future.result(), dtype=np.uint64), rows["checksums"][:, r]
            ):
                return None
        expected = rows["checksums"][:, self.slot.role]
        if not np.array_equal(np.array(target.result(), dtype=np.uint64), expected):
            return None
        self._wait_for_write()
        self._outputs.reverse()
        assert self.slot.member is not None
        offset = io.strip_offset(run[0])
        self._write = self._writer.submit(self._write_at, rebuilt, offset)
        return size * len(sources) * len(run)

    def _reconstruct(
        self,
        stripe: int,
        written_at: int,
        checksums: list[int],
        lost: int,
        known: dict[int, bytes | None],
    ) -> list[bytes] | None:
        io = self.array.io
        for attempt in range(READ_RETRIES):
            try:
                return io.reconstruct_stripe(
                    stripe,
                    written_at,
                    checksums,
                    lost,
                    repair=True,
                    known=known if attempt == 0 else None,
                )
            except IntegrityError as error:
                log.warning(
                    "rebuild_read_retry", stripe=stripe, attempt=attempt + 1, error=str(error)
                )
        self._record_lost(stripe, checksums, written_at)
        return None

    def _write_at(self, data: bytes | memoryview, offset: int) -> None:
        assert self.slot.member is not None
        self.slot.member.pwrite(data, offset)
        self.slot.member.start_writeback(offset, len(data))

    def _wait_for_write(self) -> None:
        """Wait for the write in flight; a failed write fails the target and the job."""
        write, self._write = self._write, None
        if write is None:
            return
        try:
            write.result()
        except MemberError as error:
            self.slot.counters.write += 1
            self.array._member_failed(self.slot, f"rebuild write failed: {error}")
            raise ArrayError(f"rebuild onto {self.slot.path} failed: {error}") from error
        if self._next_after_write:
            self.slot.rebuild_next = self._next_after_write
            self._next_after_write = 0

    def _close(self) -> None:
        super()._close()
        try:
            with self.array.lock:
                self._wait_for_write()
        finally:
            self._writer.shutdown(wait=True)
            if self._let_write_finish in self.array.io.write_barriers:
                self.array.io.write_barriers.remove(self._let_write_finish)

    def write_checkpoint(self) -> None:
        # The checkpoint may only name stripes whose strips were written.
        self._wait_for_write()
        super().write_checkpoint()

    def _write_rebuilt(self, rebuilt: list[tuple[int, bytes | memoryview]]) -> None:
        """Write rebuilt strips to the target, one pwrite per run of consecutive stripes."""
        assert self.slot.member is not None
        self._wait_for_write()
        io = self.array.io
        groups: list[list[tuple[int, bytes]]] = []
        for stripe, strip in rebuilt:
            if groups and groups[-1][-1][0] == stripe - 1:
                groups[-1].append((stripe, strip))
            else:
                groups.append([(stripe, strip)])
        for group in groups:
            offset = io.strip_offset(group[0][0])
            try:
                data = group[0][1] if len(group) == 1 else b"".join(s for _, s in group)
                self._write_at(data, offset)
            except MemberError as error:
                self.slot.counters.write += 1
                self.array._member_failed(self.slot, f"rebuild write failed: {error}")
                raise ArrayError(f"rebuild onto {self.slot.path} failed: {error}") from error

    def _record_lost(self, stripe: int, checksums: list[int], written_at: int) -> None:
        mask = 1 << self.slot.role
        for slot in self.array.slots:
            if slot is self.slot:
                continue
            strip = self.array.io.read_strip(slot, stripe, written_at)
            if strip is None or strip_checksum(strip) != checksums[slot.role]:
                mask |= 1 << slot.role
                if slot.member is None:
                    kind = "missing"
                elif strip is None:
                    kind = "read"
                else:
                    kind = "checksum"
                self.result.details.append(StripeError(stripe, slot.role, slot.path, kind))
        self.array.mark_lost(stripe, mask)
        self.result.lost_stripes.append(stripe)
        self.result.errors += 1
        log.error("stripe_lost", stripe=stripe, roles_mask=mask, member=self.slot.path)

    def finish(self) -> None:
        with self.array.lock:
            self.slot.state = MemberState.ACTIVE
            self.slot.rebuild_next = 0
            self.slot.resync_base = 0
            self.array.checkpoint = Checkpoint()
            self.array.commit_job_changes()
        log.info(
            "rebuild_finished",
            member=self.slot.path,
            role=self.slot.role,
            lost=len(self.result.lost_stripes),
        )
