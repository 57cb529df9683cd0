"""A file's content that arrives once, in order, offered to RestoreWriter as a data source."""

import os
from collections.abc import Iterable, Iterator

__all__ = ["StreamSource"]


class StreamSource:
    """A file's content that can be read once, offered to the writer as a DataSource.

    The writer reads a source at most twice: to compare it with an existing
    file, then to write it when they differ. Here the first read consumes
    the stream. Every piece it read except the last matched the existing
    file, so the second read takes those back from the existing file. It
    goes on with the last piece, kept in memory, and the rest of the stream.
    """

    def __init__(self, pieces: Iterable[tuple[int, bytes]]) -> None:
        self._pieces = iter(pieces)
        self._reads = 0
        self._matched: list[tuple[int, int]] = []
        self._last: tuple[int, bytes] | None = None
        self._existing = -1

    def compare_with(self, fd: int) -> None:
        """Keep the existing file the first read is compared with, for a second read."""
        if self._existing < 0:
            self._existing = os.dup(fd)

    def __call__(self) -> Iterator[tuple[int, bytes]]:
        self._reads += 1
        if self._reads == 1:
            return self._first_read()
        if self._reads == 2 and self._existing >= 0:
            return self._second_read()
        raise RuntimeError("a streamed file was read again without a comparison first")

    def _first_read(self) -> Iterator[tuple[int, bytes]]:
        for offset, piece in self._pieces:
            if self._last is not None:
                self._matched.append((self._last[0], len(self._last[1])))
            self._last = (offset, piece)
            yield offset, piece

    def _second_read(self) -> Iterator[tuple[int, bytes]]:
        for offset, length in self._matched:
            yield offset, os.pread(self._existing, length, offset)
        if self._last is not None:
            yield self._last
        yield from self._pieces

    def close(self) -> None:
        """Read the stream to its end and close the existing file."""
        for _ in self._pieces:
            pass
        if self._existing >= 0:
            os.close(self._existing)
            self._existing = -1
