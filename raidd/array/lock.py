"""The array lock file: one per array UUID, holding the owner's pid.

The member claims (`O_EXCL`, `flock`) keep a second process off the members;
this file is what lets the rejected process name the holder. It is locked
with `flock` as well, so a stale file left by a killed process is taken over
at once: the kernel drops the lock with the process. A process that closes
the array removes the file (see ArrayLock.release for why that is safe), so
only a killed process leaves one behind.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from pathlib import Path

import structlog

from raidd.errors import ArrayBusyError, ArrayError

log = structlog.get_logger(__name__)

DEFAULT_LOCK_DIR = "/run/raidd"
# Opens of a lock file that its holder unlinks at the same moment, before giving up.
_MAX_ATTEMPTS = 100


def default_lock_dir() -> Path:
    """Return the lock directory: $RAIDD_LOCK_DIR, else /run/raidd."""
    return Path(os.environ.get("RAIDD_LOCK_DIR", DEFAULT_LOCK_DIR))


def _is_current(path: Path, fd: int) -> bool:
    """Tell whether `path` still names the file open as `fd`."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def lock_path(lock_dir: Path, array_uuid: uuid.UUID) -> Path:
    return lock_dir / f"array-{array_uuid}.lock"


def read_holder_pid(path: Path) -> int | None:
    """Return the pid recorded in a lock file, or None when it contains none."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ArrayError(f"cannot read lock file {path}: {error.strerror}") from error
    return int(text) if text.isdigit() else None


class ArrayLock:
    """An exclusive lock on one array, held for the lifetime of an open Array."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def acquire(cls, lock_dir: Path, array_uuid: uuid.UUID, name: str = "") -> ArrayLock:
        """Take the lock of `array_uuid` and record this process's pid in it.

        Raises:
            ArrayBusyError: another process holds it; the message names its pid.
            ArrayError: the lock directory cannot be created or written.
        """
        path = lock_path(lock_dir, array_uuid)
        try:
            lock_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ArrayError(
                f"cannot create lock directory {lock_dir}: {error.strerror}; "
                "set RAIDD_LOCK_DIR to a writable directory"
            ) from error
        for _ in range(_MAX_ATTEMPTS):
            fd = cls._open(path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                pid = read_holder_pid(path)
                holder = f"pid {pid}" if pid is not None else "an unknown process"
                label = f" {name}" if name else ""
                raise ArrayBusyError(
                    f"array{label} {array_uuid} is held by {holder} (lock file {path}); "
                    "stop that process or use raidctl to talk to it"
                ) from None
            if _is_current(path, fd):
                break
            # The holder unlinked the file between our open and our flock, so this lock
            # is on a file nobody else will open: open the path again.
            os.close(fd)
        else:
            raise ArrayError(f"cannot take lock file {path}: it is replaced again and again")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        log.debug("array_lock_acquired", path=str(path), array_uuid=str(array_uuid))
        return cls(path, fd)

    @staticmethod
    def _open(path: Path) -> int:
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise ArrayError(
                f"cannot create lock file {path}: {error.strerror}; "
                "set RAIDD_LOCK_DIR to a writable directory"
            ) from error

    def release(self) -> None:
        """Remove the lock file, then drop the lock.

        The file is unlinked while the lock is still held. A process that
        opened it just before then gets the lock on the unlinked file, finds
        that the path no longer names it and opens the path again, so two
        processes never both hold a lock that the path names.
        """
        if self._fd < 0:
            return
        os.ftruncate(self._fd, 0)
        if _is_current(self.path, self._fd):
            try:
                os.unlink(self.path)
            except OSError as error:
                log.warning("array_lock_unlink_failed", path=str(self.path), error=error.strerror)
        os.close(self._fd)
        self._fd = -1
