"""Pack objects into stripe buffers, write them through the array, read them back.

A Packer fills one stripe buffer at a time and writes it with
`Array.write_stripe` when it is full (or on flush). An object that does not
fit the rest of the buffer continues in the next one, so its location is a
list of pieces. Piece stripe numbers are known only once their buffer is
written; `flush()` returns after every piece added so far has one.
"""

import threading

from raidd.array import Array
from raidd.errors import IntegrityError
from raidd.store.objects import Location, Piece

__all__ = ["Packer", "read_location"]


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
        use_reserve: allow the stripes kept for garbage collection (gc only).
    """

    def __init__(self, array: Array, use_reserve: bool = False) -> None:
        self.array = array
        self.size = array.stripe_data_size
        self.use_reserve = use_reserve
        self._buffer = bytearray(self.size)
        self._used = 0
        self._waiting: list[_PendingPiece] = []
        self._lock = threading.Lock()
        self.stripes_written: list[int] = []
        self.bytes_packed = 0

    def add(self, data: bytes | bytearray, start_fresh: bool = False) -> PendingLocation:
        """Append one object's bytes; return its location, resolved after flush().

        Args:
            data: the object (header and sealed block).
            start_fresh: begin in a new buffer when the current one cannot
                take the whole object (keeps small metadata in one piece).

        Raises:
            ArrayFullError: no free stripe outside the reserve.
        """
        with self._lock:
            if start_fresh and self._used and self._used + len(data) > self.size:
                self._write_buffer()
            pieces = []
            view = memoryview(data)
            while view:
                if self._used == self.size:
                    self._write_buffer()
                take = min(len(view), self.size - self._used)
                self._buffer[self._used : self._used + take] = view[:take]
                piece = _PendingPiece(self._used, take)
                self._waiting.append(piece)
                pieces.append(piece)
                self._used += take
                view = view[take:]
            self.bytes_packed += len(data)
            return PendingLocation(pieces)

    def _write_buffer(self) -> None:
        if not self._used:
            return
        stripe = self.array.write_stripe(
            memoryview(self._buffer)[: self._used], use_reserve=self.use_reserve
        )
        for piece in self._waiting:
            piece.stripe = stripe
        self._waiting.clear()
        self.stripes_written.append(stripe)
        self._buffer = bytearray(self.size)
        self._used = 0

    def flush(self) -> None:
        """Write the partly filled buffer, so that every location resolves."""
        with self._lock:
            self._write_buffer()


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
