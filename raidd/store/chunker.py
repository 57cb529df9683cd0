"""Content-defined chunking, keyed by the array's chunker-seed subkey.

Chunks are cut with FastCDC 2020 (Xia et al., "The Design of Fast
Content-Defined Chunking for Data Deduplication Based Storage Systems", IEEE
TPDS 2020) as implemented by pyfastcdc 0.3, whose cut points match
nlfiedler/fastcdc-rs v2020 and which releases the GIL while it scans.

Sizes (constants below; the same for every array, so equal data cuts alike):
    minimum 128 KiB, FastCDC target 512 KiB, maximum 2 MiB. pyfastcdc's mean
    is about the target plus the minimum: bench/chunker.py measures 638 KiB
    on random data. A file no larger than the target is one chunk.

Keying: pyfastcdc's `seed` is XORed into every entry of its 256-entry gear
table (`GEAR[i] ^ seed`, and `seed << 1` into the shifted table, read in
pyfastcdc/cy/fastcdc.pyx of 0.3.1). The seed is 63 bits of
BLAKE2b(key=chunker-seed subkey, person="raidd-cdc-seed"): 63, because
pyfastcdc converts `seed << 1` to a uint64 and raises OverflowError for
seeds of 2**63 and above. Cut points therefore differ between arrays, and
someone without the key cannot predict them from known plaintext by
running the public chunker.

NOTE: a seeded gear table is a mitigation, not a cryptographic guarantee.
Truong, Merz, Scarlata, Günther and Paterson ("Breaking and Fixing
Content-Defined Chunking", Real World Crypto 2025) report attacks that defeat
the keyed chunkers of borg, restic and others under some assumptions. So the
sizes of sealed chunks still leak roughly where content-defined cuts fall.

Memory: a stream is scanned through pyfastcdc's stream chunker, whose buffer
is twice the maximum chunk size (4 MiB), whatever the file's size.
"""

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from pyfastcdc import FastCDC

__all__ = [
    "AVG_SIZE",
    "MAX_SIZE",
    "MIN_SIZE",
    "SEED_KEY_SIZE",
    "Chunk",
    "Chunker",
    "derive_seed",
]

MIN_SIZE = 128 << 10
AVG_SIZE = 512 << 10
MAX_SIZE = 2 << 20
SEED_KEY_SIZE = 32
_SEED_PERSON = b"raidd-cdc-seed"


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a file: its offset in the file and its bytes."""

    offset: int
    data: bytes


def derive_seed(seed_key: bytes) -> int:
    """Derive pyfastcdc's 63-bit gear seed from the 32-byte chunker-seed subkey.

    Raises:
        ValueError: the key is not 32 bytes (a programming error).
    """
    if len(seed_key) != SEED_KEY_SIZE:
        raise ValueError(f"chunker seed key must be {SEED_KEY_SIZE} bytes, got {len(seed_key)}")
    digest = hashlib.blake2b(
        b"gear-table-xor", key=seed_key, digest_size=8, person=_SEED_PERSON
    ).digest()
    seed = int.from_bytes(digest, "little") >> 1
    # pyfastcdc takes seed 0 to mean its public default table; 1 in 2**63.
    return seed or 1


class _LimitedReader:
    """A readinto() view of at most `remaining` bytes of a binary file."""

    def __init__(self, stream: BinaryIO, remaining: int | None) -> None:
        self.stream = stream
        self.remaining = remaining
        self.total = 0

    def readinto(self, buffer: memoryview) -> int:
        if self.remaining is not None:
            if self.remaining <= 0:
                return 0
            buffer = buffer[: self.remaining]
        count = self.stream.readinto(buffer)  # type: ignore[attr-defined]
        if count is None:
            raise BlockingIOError("the stream returned no data (non-blocking file?)")
        if self.remaining is not None:
            self.remaining -= count
        self.total += count
        return int(count)


class Chunker:
    """Cut buffers and files into content-defined chunks for one array.

    One instance may be shared by threads: pyfastcdc's FastCDC object holds
    only its configuration, and each call creates its own iterator.
    """

    def __init__(
        self,
        seed_key: bytes,
        min_size: int = MIN_SIZE,
        avg_size: int = AVG_SIZE,
        max_size: int = MAX_SIZE,
    ) -> None:
        """Create a chunker.

        Args:
            seed_key: the array's 32-byte chunker-seed subkey.
            min_size: smallest chunk cut from a longer input, in bytes.
            avg_size: FastCDC's target; inputs up to this size are one chunk.
            max_size: largest chunk, in bytes.

        Raises:
            ValueError: a wrong-length key, or sizes outside pyfastcdc's bounds
                (min 64 B to 1 MiB, target 256 B to 4 MiB, max 1 KiB to 16 MiB).
        """
        self.seed = derive_seed(seed_key)
        for name, value, low, high in (
            ("min_size", min_size, 64, 1 << 20),
            ("avg_size", avg_size, 256, 4 << 20),
            ("max_size", max_size, 1 << 10, 16 << 20),
        ):
            if not low <= value <= high:
                raise ValueError(f"{name} must be {low} to {high} bytes, got {value}")
        self.min_size = min_size
        self.avg_size = avg_size
        self.max_size = max_size
        self._cdc_instance: FastCDC | None = None

    @property
    def _cdc(self) -> "FastCDC":
        # Imported on first use, so that a backup that reads no file does not load it.
        if self._cdc_instance is None:
            from pyfastcdc import FastCDC

            self._cdc_instance = FastCDC(
                self.avg_size, min_size=self.min_size, max_size=self.max_size, seed=self.seed
            )
        return self._cdc_instance

    def cut_points(self, data: bytes | bytearray | memoryview) -> list[int]:
        """Return the end offset of every chunk of `data`, the last being len(data)."""
        return [chunk.offset + len(chunk.data) for chunk in self.chunk_buffer(data)]

    def chunk_buffer(self, data: bytes | bytearray | memoryview) -> Iterator[Chunk]:
        """Cut an in-memory buffer; an empty buffer yields no chunk."""
        view = memoryview(data)
        if len(view) == 0:
            return
        if len(view) <= self.avg_size:
            yield Chunk(0, bytes(view))
            return
        for piece in self._cdc.cut_buf(view):
            yield Chunk(piece.offset, bytes(piece.data))

    def chunk_stream(
        self, stream: BinaryIO, limit: int | None = None, base_offset: int = 0
    ) -> Iterator[Chunk]:
        """Cut a binary stream from its current position, with bounded memory.

        Args:
            stream: a file object with readinto(), such as open(path, "rb").
            limit: read at most this many bytes (one data extent of a sparse
                file, say); None reads to the end.
            base_offset: added to each chunk's offset, so that offsets are
                positions in the file when the stream starts mid-file.

        Yields:
            Chunks in order; their data is a copy, valid after the next one.
        """
        if limit is not None and limit <= self.avg_size:
            data = stream.read(limit)
            if data:
                yield Chunk(base_offset, data)
            return
        first = stream.read(self.avg_size + 1)
        if len(first) <= self.avg_size:
            if first:
                yield Chunk(base_offset, first)
            return
        reader = _Prefixed(
            first, _LimitedReader(stream, None if limit is None else limit - len(first))
        )
        for piece in self._cdc.cut_stream(reader):
            yield Chunk(base_offset + piece.offset, bytes(piece.data))


class _Prefixed:
    """A readinto() source that returns `prefix` first, then reads from `rest`."""

    def __init__(self, prefix: bytes, rest: _LimitedReader) -> None:
        self.prefix = memoryview(prefix)
        self.rest = rest

    def readinto(self, buffer: memoryview) -> int:
        if self.prefix:
            count = min(len(buffer), len(self.prefix))
            buffer[:count] = self.prefix[:count]
            self.prefix = self.prefix[count:]
            return count
        return self.rest.readinto(buffer)
