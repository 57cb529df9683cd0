"""Pack objects into stripe buffers, write them through the array, read them back.

A Packer fills one stripe buffer at a time. A full buffer goes to a queue
that one writer thread empties with `Array.write_stripe` (parity, checksums
and member writes), so the threads that add objects do not wait for the
array. `flush()` queues the partly filled buffer and returns once every
buffer is written. An object that does not fit the rest of the buffer
continues in the next one, so its location is a list of pieces. Piece
stripe numbers are known only once their buffer is written; after
`flush()` every piece added so far has one.

Memory: at most MAX_QUEUED full buffers wait for the writer when an add
begins; one add of an object longer than a stripe can queue one more
buffer per stripe it spans.
"""

import threading
from collections import deque
from collections.abc import Sequence

from raidd.array import Array, Reserve
from raidd.errors import IntegrityError
from raidd.store.objects import Location, Piece

__all__ = ["MAX_QUEUED", "Packer", "read_location"]

# Full stripe buffers waiting for the writer thread before add() blocks.
MAX_QUEUED = 8
# Seconds the writer thread waits for another buffer before it exits.
WRITER_IDLE = 0.5

Bytes = bytes | bytearray | memoryview


class _PendingPiece:
    __slots__ = ("length", "offset", "stripe")

    def __init__(self, offset: int, length: int) -> None:
        self.stripe = -1
        self.offset = offset
        self.length = length


class PendingLocation:
    """An object's location whose last pieces may still wait for their stripe."""

    def __init__(self, pieces: list[_PendingPiece]) -> None:
        self._pieces = pieces

    def resolve(self) -> Location:
        """Return the pieces; raises if a buffer was not written yet (call flush first)."""
        if any(piece.stripe < 0 for piece in self._pieces):
            raise RuntimeError("object location read before its stripe was written")
        return tuple(Piece(p.stripe, p.offset, p.length) for p in self._pieces)


class Packer:
    """Pack byte strings into stripe buffers of one array; thread-safe.

    Args:
        array: the open, writable array.
        reserve: the writer's share of the stripes kept for garbage
            collection (raidd.array.reserve): none for backups.
    """

    def __init__(self, array: Array, reserve: Reserve = Reserve.NONE) -> None:
        self.array = array
        self.size = array.stripe_data_size
        self.reserve = reserve
        self._buffer = bytearray(self.size)
        self._used = 0
        self._waiting: list[_PendingPiece] = []
        self._lock = threading.Lock()
        # Adders and flush() wait on _room, the writer thread on _work.
        self._room = threading.Condition(self._lock)
        self._work = threading.Condition(self._lock)
        self._full: deque[tuple[bytearray, int, list[_PendingPiece]]] = deque()
        self._spare: list[bytearray] = []
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None
        self.stripes_written: list[int] = []
        self.bytes_packed = 0

    def add(self, data: Bytes | Sequence[Bytes], start_fresh: bool = False) -> PendingLocation:
        """Append one object's bytes; return its location, resolved after flush().

        Args:
            data: the object (header and sealed block), or its parts in order,
                which are packed as if joined.
            start_fresh: begin in a new buffer when the current one cannot
                take the whole object (keeps small metadata in one piece).

        Raises:
            ArrayFullError: no free stripe outside the writer's reserve share (raised by the
                first add or flush after the writer thread met it).
        """
        parts = [data] if isinstance(data, bytes | bytearray | memoryview) else list(data)
        total = sum(len(part) for part in parts)
        with self._lock:
            while len(self._full) >= MAX_QUEUED and self._error is None:
                self._room.wait()
            self._raise_error()
            if start_fresh and self._used and self._used + total > self.size:
                self._queue_buffer()
            pieces: list[_PendingPiece] = []
            for part in parts:
                self._copy_in(memoryview(part).cast("B"), pieces)
            self.bytes_packed += total
            return PendingLocation(pieces)

    def _copy_in(self, view: memoryview, pieces: list[_PendingPiece]) -> None:
        while view:
            if self._used == self.size:
                self._queue_buffer()
            take = min(len(view), self.size - self._used)
            self._buffer[self._used : self._used + take] = view[:take]
            if pieces and self._waiting and self._waiting[-1] is pieces[-1]:
                # The next part of the same object, right after the last one.
                pieces[-1].length += take
            else:
                piece = _PendingPiece(self._used, take)
                self._waiting.append(piece)
                pieces.append(piece)
            self._used += take
            view = view[take:]

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _queue_buffer(self) -> None:
        """Hand the current buffer to the writer thread (called with the lock held)."""
        if not self._used:
            return
        self._full.append((self._buffer, self._used, self._waiting))
        # A written buffer is reused: write_stripe copies what it is given.
        self._buffer = self._spare.pop() if self._spare else bytearray(self.size)
        self._used = 0
        self._waiting = []
        if self._writer is not None:
            self._work.notify()
        else:
            self._writer = threading.Thread(
                target=self._write_queued, name="raidd-packer", daemon=True
            )
            self._writer.start()

    def _write_queued(self) -> None:
        """Write queued buffers in order; exit after WRITER_IDLE seconds without work."""
        while True:
            with self._lock:
                if not self._full:
                    self._work.wait_for(lambda: bool(self._full), timeout=WRITER_IDLE)
                if not self._full:
                    self._writer = None
                    return
                buffer, used, pieces = self._full[0]
            try:
                stripe = self.array.write_stripe(memoryview(buffer)[:used], reserve=self.reserve)
            except BaseException as error:
                with self._lock:
                    self._error = error
                    self._full.clear()
                    self._writer = None
                    self._room.notify_all()
                return
            with self._lock:
                for piece in pieces:
                    piece.stripe = stripe
                self.stripes_written.append(stripe)
                self._full.popleft()
                if len(self._spare) < MAX_QUEUED:
                    self._spare.append(buffer)
                if len(self._full) in (0, MAX_QUEUED - 1):
                    # Drained (flush waits for that) or room for a waiting add().
                    self._room.notify_all()

    def flush(self) -> None:
        """Queue the partly filled buffer and wait until every queued buffer is written.

        Every location added so far resolves afterwards.

        Raises:
            ArrayFullError: no free stripe was left for a buffer.
        """
        with self._lock:
            self._raise_error()
            self._queue_buffer()
            while self._full and self._error is None:
                self._room.wait()
            self._raise_error()


def read_location(array: Array, pieces: Location) -> bytes:
    """Read and join an object's pieces; every strip is verified by the engine.

    Raises:
        IntegrityError: a piece cannot be recovered (the engine names the stripe).
        ArrayError: a piece points at a stripe that is not allocated.
    """
    parts = []
    for piece in pieces:
        if piece.offset + piece.length > array.stripe_data_size:
            raise IntegrityError(
                f"object piece {piece.offset}+{piece.length} exceeds stripe {piece.stripe}"
            )
        parts.append(array.read(piece.stripe, piece.offset, piece.length))
    return b"".join(parts)
