"""Writing streamed files on the client side, with the caller's own permissions.

raidctl, not the daemon, writes restored files, so a caller restores only
where it may write. Each file goes to a temporary file in its destination
directory and is renamed to its name only after its size and SHA-256 were
checked, so an interrupted restore leaves no half-written file under a
real name. A path from the stream must stay inside the destination root:
absolute paths, `..` components and symbolic links on the way are rejected.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raidd.control.stream import StreamError

# Permission bits kept from the stream; set-user-ID, set-group-ID and sticky
# bits are dropped because a restore must not create privileged files.
_MODE_MASK = 0o777


def resolve_destination(root: Path, relative: bytes) -> Path:
    """Return where a streamed path goes under `root`.

    Raises:
        StreamError: the path is empty, absolute, contains a NUL byte or a
            `.` or `..` component, or an existing directory on the way is a
            symbolic link.
    """
    if not relative or relative.startswith(b"/") or b"\0" in relative:
        raise StreamError(f"invalid restore path {relative!r}: it must be relative and non-empty")
    parts = relative.split(b"/")
    if any(part in (b"", b".", b"..") for part in parts):
        raise StreamError(f"invalid restore path {relative!r}: empty, '.' or '..' component")
    destination = root
    for part in parts[:-1]:
        destination = destination / os.fsdecode(part)
        try:
            info = destination.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            raise StreamError(
                f"restore path {relative!r}: {destination} is not a directory "
                "(symbolic links are not followed); move it away or restore elsewhere"
            )
    return destination / os.fsdecode(parts[-1])


class TemporaryFileSink:
    """A sink that writes a temporary file beside the destination and renames it on commit."""

    def __init__(self, destination: Path, header: dict[str, Any]) -> None:
        self.destination = destination
        self.header = header
        destination.parent.mkdir(parents=True, exist_ok=True)
        suffix = secrets.token_hex(4)
        self._temporary = destination.with_name(f".{destination.name}.raidd-{suffix}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self._fd: int | None = os.open(self._temporary, flags, 0o600)

    def write(self, data: bytes) -> int:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        return len(data)

    def commit(self) -> None:
        """Apply mode and mtime from the header, flush to disk, and rename into place."""
        assert self._fd is not None
        mode = self.header.get("mode")
        os.fchmod(self._fd, (mode if type(mode) is int else 0o644) & _MODE_MASK)
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        mtime_ns = self.header.get("mtime_ns")
        if type(mtime_ns) is int:
            os.utime(self._temporary, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
        os.replace(self._temporary, self.destination)

    def discard(self) -> None:
        """Remove the temporary file; the destination is left as it was."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._temporary.unlink(missing_ok=True)


def directory_sinks(root: Path) -> Callable[[dict[str, Any]], TemporaryFileSink]:
    """Return an `open_sink` for FileStreamDecoder that writes files under `root`."""

    def open_sink(header: dict[str, Any]) -> TemporaryFileSink:
        return TemporaryFileSink(resolve_destination(root, header["path_bytes"]), header)

    return open_sink
