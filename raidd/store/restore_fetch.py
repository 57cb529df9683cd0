"""Read, authenticate and decompress a restore's chunks ahead of the writer, in threads.

The writer takes files one at a time, in catalog order. A ChunkFetcher is
given the files' chunks ahead of it (`add`) and keeps `FETCH_WORKERS`
threads reading them through the array engine, opening and decompressing
them, while the writer writes earlier ones. `pieces(file)` returns a file's
chunks in order. pycryptodome's AES-GCM calls (through ctypes) and the
members' preads release the GIL, so those parts overlap with each other and
with the writer's own writes; the Python parts of each step do not.

NOTE: on the shared 2-core benchmark machine, restores with this fetcher
were no faster than the direct reads it replaced (docs/BENCHMARKS.md, "The
threaded pipeline"); the gain it is built for needs a free core.

For each chunk it reads, the fetcher also has the array read the chunk's
stripes, and the ADVISE_STRIPES - 1 after them, into the page cache
(`Array.advise_read`), so the engine's strip-by-strip reads under its lock
find their data there instead of waiting for the disk one strip at a time.

Memory: decoded chunks of at most FETCH_WINDOW bytes are being read or wait
for the writer (one chunk more when a single chunk is larger). Chunks of a
file that the writer skips (a hard link, an unchanged file) are dropped.

Errors: a chunk that cannot be recovered raises IntegrityError from
`pieces` of its file, exactly as the direct read would.
"""

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType

from raidd.errors import IntegrityError
from raidd.store.catalog_format import Version
from raidd.store.compress import decode_chunk
from raidd.store.objects import KIND_CHUNK, Location
from raidd.store.store import Store

__all__ = ["FETCH_WINDOW", "FETCH_WORKERS", "ChunkFetcher", "read_chunk"]

FETCH_WORKERS = 2
# Bytes of decoded chunks being read or waiting for the writer.
FETCH_WINDOW = 8 << 20
# Stripes read ahead at once when a chunk lies outside the last run advised.
ADVISE_STRIPES = 32


@dataclass(frozen=True, slots=True)
class _Job:
    file: int
    offset: int
    length: int
    chunk_id: bytes


def read_chunk(store: Store, chunk_id: bytes, pieces: Location | None, length: int) -> bytes:
    """Read, authenticate and decode one chunk of a file version.

    Raises:
        IntegrityError: the chunk is missing from the object index or lost.
    """
    if pieces is None:
        raise IntegrityError(f"chunk {chunk_id.hex()[:16]} is missing from the object index")
    stored = store.read_object(KIND_CHUNK, chunk_id, pieces)
    # decode_chunk reads the opened bytearray in place: a bytes() copy here would
    # copy every chunk once more.
    return decode_chunk(stored, length)


class ChunkFetcher:
    """Fetch the chunks of files ahead of their writer; a context manager.

    `add` and `pieces` are called from one thread. The pool threads look
    chunks up in the object index (its SQLite connection serializes them),
    read and decode them.
    """

    def __init__(
        self, store: Store, workers: int = FETCH_WORKERS, window: int = FETCH_WINDOW
    ) -> None:
        self.store = store
        self._window = window
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="raidd-restore")
        self._jobs: deque[_Job] = deque()
        self._running: deque[tuple[_Job, Future[bytes]]] = deque()
        self._running_bytes = 0
        self._advised = (0, 0)
        self._advice = ThreadPoolExecutor(max_workers=1, thread_name_prefix="raidd-advice")

    def __enter__(self) -> "ChunkFetcher":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Drop what is queued and wait for the reads in flight."""
        self._jobs.clear()
        for _, future in self._running:
            future.cancel()
        self._running.clear()
        self._pool.shutdown(wait=True)
        self._advice.shutdown(wait=True)

    @property
    def queued(self) -> int:
        """Chunks added and not taken yet."""
        return len(self._jobs) + len(self._running)

    def add(self, file: int, version: Version) -> None:
        """Queue the chunks of a file version; `file` numbers files in writing order."""
        for chunk in version.chunks:
            self._jobs.append(_Job(file, chunk.offset, chunk.length, chunk.chunk_id))
        self._pump()

    def _fetch(self, job: _Job) -> bytes:
        entry = self.store.objects.get(job.chunk_id)
        pieces = entry.pieces if entry is not None else None
        for piece in pieces or ():
            self._advise(piece.stripe)
        return read_chunk(self.store, job.chunk_id, pieces, job.length)

    def _advise(self, stripe: int) -> None:
        # Objects of one backup lie mostly in consecutive stripes, so the
        # stripes from here on are read ahead as one run, by a thread of its
        # own: posix_fadvise waits while the kernel queues the reads. Pool
        # threads race here at worst into advising a run twice.
        first, end = self._advised
        if first <= stripe < end:
            return
        self._advised = (stripe, stripe + ADVISE_STRIPES)
        self._advice.submit(self.store.array.advise_read, stripe, ADVISE_STRIPES)

    def pieces(self, file: int) -> Iterator[tuple[int, bytes]]:
        """Yield (offset, bytes) of a file's chunks in order, as they arrive.

        Chunks of files numbered below `file` are dropped first.

        Raises:
            IntegrityError: a chunk of the file is lost.
        """
        self._drop_before(file)
        while True:
            self._pump()
            if not self._running or self._running[0][0].file != file:
                return
            job, future = self._running.popleft()
            self._running_bytes -= job.length
            self._pump()
            yield job.offset, future.result()

    def _pump(self) -> None:
        while self._jobs and (
            not self._running or self._running_bytes + self._jobs[0].length <= self._window
        ):
            job = self._jobs.popleft()
            future = self._pool.submit(self._fetch, job)
            self._running.append((job, future))
            self._running_bytes += job.length

    def _drop_before(self, file: int) -> None:
        while self._running and self._running[0][0].file < file:
            job, future = self._running.popleft()
            self._running_bytes -= job.length
            future.cancel()
        while self._jobs and self._jobs[0].file < file:
            self._jobs.popleft()
