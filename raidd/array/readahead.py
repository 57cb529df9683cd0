"""Read-ahead for array jobs: one reader thread per member, runs read into reused buffers."""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from concurrent.futures import Future, ThreadPoolExecutor

from raidd.array.member import Member, MemberError
from raidd.array.stripeio import StripeIO
from raidd.array.superblock import MemberState

Fetched = dict[int, memoryview | MemberError]


def _read(member: Member, view: memoryview, offset: int) -> memoryview | MemberError:
    try:
        member.pread_into(view, offset)
    except MemberError as error:
        return error
    return view


class RunReader:
    """Read runs of consecutive stripes ahead of a job, into buffers it reuses.

    Each member has its own thread, so every member's read stays in flight
    while the job checks the run before (os.preadv releases the GIL), and no
    read waits behind checksum work on the member pool. Up to `depth` runs
    are queued. The views `take` returns stay valid until the next `take`,
    `cancel` or `close`, because their buffers are then reused.
    """

    def __init__(self, io: StripeIO, run_bytes: int, depth: int) -> None:
        self.io = io
        self.run_bytes = run_bytes
        self.depth = depth
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, len(io.slots)), thread_name_prefix="read-ahead"
        )
        self._spare: list[dict[int, bytearray]] = []
        self._queue: deque[tuple[list[int], dict[int, Future[memoryview | MemberError]]]] = deque()
        self._buffers: deque[dict[int, bytearray]] = deque()
        self._current: dict[int, bytearray] | None = None

    @property
    def queued(self) -> int:
        return len(self._queue)

    def submit(self, run: list[int], skip_roles: Collection[int] = ()) -> None:
        """Start reading `run` on every present member except `skip_roles`."""
        buffers = self._spare.pop() if self._spare else {}
        length = len(run) * self.io.strip_size
        offset = self.io.strip_offset(run[0])
        futures: dict[int, Future[memoryview | MemberError]] = {}
        for slot in self.io.slots:
            if slot.member is None or slot.state is MemberState.FAILED:
                continue
            if slot.role in skip_roles:
                continue
            buffer = buffers.get(slot.role)
            if buffer is None or len(buffer) < length:
                buffer = buffers[slot.role] = bytearray(max(length, self.run_bytes))
            view = memoryview(buffer)[:length]
            futures[slot.role] = self._pool.submit(_read, slot.member, view, offset)
        self._queue.append((run, futures))
        self._buffers.append(buffers)

    def take(self, run: list[int]) -> Fetched | None:
        """Return the data of `run` when it is the oldest queued run, else drop the queue.

        The buffers of the run taken before are reused from now on.
        """
        self._release()
        if not self._queue or self._queue[0][0] != run:
            self.cancel()
            return None
        _, futures = self._queue.popleft()
        self._current = self._buffers.popleft()
        return {role: future.result() for role, future in futures.items()}

    def _release(self) -> None:
        if self._current is not None:
            self._spare.append(self._current)
            self._current = None

    def cancel(self) -> None:
        """Wait for the queued reads and drop them."""
        self._release()
        while self._queue:
            _, futures = self._queue.popleft()
            for future in futures.values():
                future.result()
            self._spare.append(self._buffers.popleft())

    def close(self) -> None:
        self.cancel()
        self._pool.shutdown(wait=True)
