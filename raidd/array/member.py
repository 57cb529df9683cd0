"""Member I/O: image files and block devices, read and written with pread/pwrite.

A member is opened once per process. When opened for writing it is claimed:
block devices with `O_EXCL` (the kernel rejects a second exclusive opener and
any mounted filesystem), image files with an exclusive `flock`. Read-only
opens (`raidd examine`) take no claim, so they work beside a running daemon.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from raidd.errors import EXIT_BUSY, MemberError

log = structlog.get_logger(__name__)

# BLKGETSIZE64 = _IOR(0x12, 114, size_t): the device size in bytes.
BLKGETSIZE64 = 0x80081272

# sync_file_range(2) is not in the os module; SYNC_FILE_RANGE_WRITE from <fcntl.h>.
SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


_sync_file_range = _load_sync_file_range()


class MemberVanishedError(MemberError):
    """A member that is gone: unplugged, or an image file deleted while open."""


class MemberIOError(MemberError):
    """A read or write on a member that failed."""

    def __init__(self, message: str, *, path: str, offset: int, errno_value: int | None) -> None:
        super().__init__(message)
        self.path = path
        self.offset = offset
        self.errno_value = errno_value


class MemberClaimedError(MemberError):
    """A member that another process holds (exclusive open or lock)."""

    exit_code = EXIT_BUSY


@dataclass(frozen=True)
class DeviceIdentity:
    """What makes two paths the same device: (st_rdev) for block devices, (st_dev, st_ino)
    for files."""

    kind: str
    major_minor_or_dev: int
    inode: int

    def describe(self) -> str:
        if self.kind == "block":
            device = self.major_minor_or_dev
            return f"block device {os.major(device)}:{os.minor(device)}"
        return f"file inode {self.inode} on device {self.major_minor_or_dev}"


def identify(path: str | os.PathLike[str]) -> DeviceIdentity:
    """Return the identity of the device or file at `path` (following symlinks).

    Raises:
        MemberError: the path does not exist or is neither a file nor a block device.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise MemberError(f"member {path} not found") from None
    except OSError as error:
        raise MemberError(f"cannot stat member {path}: {error.strerror}") from error
    return _identity_of(str(path), st)


# LOOP_GET_STATUS64 from <linux/loop.h>; struct loop_info64 starts with the backing
# file's lo_device and lo_inode (two u64) and is 232 bytes long.
LOOP_GET_STATUS64 = 0x4C05
LOOP_INFO64_SIZE = 232
LOOP_MAJOR = 7


def backing_identity(path: str | os.PathLike[str]) -> DeviceIdentity | None:
    """Return the identity of the file behind a loop device, or None for anything else.

    A loop device and its backing file reach the same bytes, so callers that
    reject duplicate members compare this identity as well.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISBLK(st.st_mode) or os.major(st.st_rdev) != LOOP_MAJOR:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        raise MemberError(f"cannot open loop device {path}: {error.strerror}") from error
    try:
        info = fcntl.ioctl(fd, LOOP_GET_STATUS64, bytes(LOOP_INFO64_SIZE))
    except OSError as error:
        if error.errno == errno.ENXIO:
            return None  # a loop device with no backing file attached
        raise MemberError(
            f"cannot read the backing file of loop device {path}: {error.strerror}"
        ) from error
    finally:
        os.close(fd)
    device, inode = struct.unpack_from("=QQ", info)
    return DeviceIdentity("file", device, inode)


def identities(path: str | os.PathLike[str]) -> list[DeviceIdentity]:
    """Return every identity of `path`: its own, and its backing file's for a loop device."""
    own = identify(path)
    backing = backing_identity(path)
    return [own] if backing is None else [own, backing]


def _identity_of(path: str, st: os.stat_result) -> DeviceIdentity:
    if stat.S_ISBLK(st.st_mode):
        return DeviceIdentity("block", st.st_rdev, 0)
    if stat.S_ISREG(st.st_mode):
        return DeviceIdentity("file", st.st_dev, st.st_ino)
    raise MemberError(f"member {path} is neither a regular file nor a block device")


class Member:
    """One open member: a file descriptor plus its path, size and identity.

    Subclasses (the fault-injecting member of the tests) override `pread`,
    `pwrite` and `fsync`; everything else goes through those three.
    """

    def __init__(self, path: str, fd: int, size: int, identity: DeviceIdentity, writable: bool):
        self.path = path
        self.fd = fd
        self.size = size
        self.identity = identity
        self.writable = writable
        self.is_block = identity.kind == "block"

    def __repr__(self) -> str:
        return f"<Member {self.path} size={self.size}>"

    def check_present(self) -> None:
        """Raise MemberVanishedError when an image file was deleted while open."""
        if self.is_block or self.fd < 0:
            return
        try:
            links = os.fstat(self.fd).st_nlink
        except OSError as error:
            raise MemberVanishedError(f"member {self.path} vanished: {error.strerror}") from error
        if links == 0:
            raise MemberVanishedError(f"member {self.path} vanished: the image file was deleted")

    def advise_read(self, length: int, offset: int) -> None:
        """Ask the kernel to start reading a range into the page cache (POSIX_FADV_WILLNEED).

        A hint only: it returns without waiting for the data, and a failure
        is logged and otherwise ignored, because the later pread reads the
        range anyway and reports its own errors.
        """
        if self.fd < 0:
            return
        try:
            os.posix_fadvise(self.fd, offset, length, os.POSIX_FADV_WILLNEED)
        except OSError as error:
            log.debug("member_advice_failed", path=self.path, offset=offset, error=error.strerror)

    def pread(self, length: int, offset: int) -> bytes:
        """Read exactly `length` bytes at `offset`.

        Raises:
            MemberIOError: the read failed or came back short.
            MemberVanishedError: the member is gone.
        """
        self.check_present()
        try:
            data = os.pread(self.fd, length, offset)
        except OSError as error:
            raise MemberIOError(
                f"read of {length} bytes at offset {offset} of member {self.path} failed: "
                f"{error.strerror}",
                path=self.path,
                offset=offset,
                errno_value=error.errno,
            ) from error
        if len(data) != length:
            raise MemberIOError(
                f"short read at offset {offset} of member {self.path}: "
                f"{len(data)} of {length} bytes",
                path=self.path,
                offset=offset,
                errno_value=None,
            )
        return data

    def pread_into(self, buffer: bytearray | memoryview, offset: int) -> None:
        """Fill `buffer` with the bytes at `offset`, without allocating (os.preadv).

        Raises:
            MemberIOError: the read failed or came back short.
            MemberVanishedError: the member is gone.
        """
        self.check_present()
        view = memoryview(buffer)
        done = 0
        while done < len(view):
            try:
                count = os.preadv(self.fd, [view[done:]], offset + done)
            except OSError as error:
                raise MemberIOError(
                    f"read of {len(view)} bytes at offset {offset} of member {self.path} "
                    f"failed: {error.strerror}",
                    path=self.path,
                    offset=offset,
                    errno_value=error.errno,
                ) from error
            if count == 0:
                raise MemberIOError(
                    f"short read at offset {offset} of member {self.path}: "
                    f"{done} of {len(view)} bytes",
                    path=self.path,
                    offset=offset,
                    errno_value=None,
                )
            done += count

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        """Write all of `data` at `offset`.

        Raises:
            MemberIOError: the write failed or was short.
            MemberVanishedError: the member is gone.
        """
        self.check_present()
        view = memoryview(data)
        done = 0
        while done < len(view):
            try:
                written = os.pwrite(self.fd, view[done:], offset + done)
            except OSError as error:
                raise MemberIOError(
                    f"write of {len(view)} bytes at offset {offset} of member {self.path} "
                    f"failed: {error.strerror}",
                    path=self.path,
                    offset=offset,
                    errno_value=error.errno,
                ) from error
            if written == 0:
                raise MemberIOError(
                    f"write at offset {offset + done} of member {self.path} wrote nothing",
                    path=self.path,
                    offset=offset + done,
                    errno_value=None,
                )
            done += written

    def start_writeback(self, offset: int, length: int) -> None:
        """Ask the kernel to start writing a range out now, so a later fsync waits less.

        This promises no durability (fsync does that); it only overlaps the
        device's work with the caller's.
        """
        if _sync_file_range is None:
            return
        if _sync_file_range(self.fd, offset, length, SYNC_FILE_RANGE_WRITE) != 0:
            log.debug("writeback_hint_failed", path=self.path, errno=ctypes.get_errno())

    def fsync(self) -> None:
        """Make every write so far durable.

        Raises:
            MemberIOError: fsync failed (the kernel may have dropped dirty pages).
        """
        self.check_present()
        try:
            os.fsync(self.fd)
        except OSError as error:
            raise MemberIOError(
                f"fsync of member {self.path} failed: {error.strerror}",
                path=self.path,
                offset=0,
                errno_value=error.errno,
            ) from error

    def close(self) -> None:
        """Close the descriptor, which also drops the claim."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def device_size(fd: int, st: os.stat_result) -> int:
    """Return the size in bytes of an open file or block device."""
    if stat.S_ISBLK(st.st_mode):
        buffer = fcntl.ioctl(fd, BLKGETSIZE64, b"\0" * 8)
        return int(struct.unpack("=Q", buffer)[0])
    return st.st_size


def open_member(
    path: str | os.PathLike[str], *, writable: bool, claim: bool | None = None
) -> Member:
    """Open a member by path; claim it exclusively when opened for writing.

    Args:
        path: an image file or a block device.
        writable: open read-write; otherwise read-only.
        claim: take the exclusive claim (defaults to `writable`).

    Returns:
        The open member.

    Raises:
        MemberError: the path is missing or of the wrong kind.
        MemberClaimedError: another process holds it.
    """
    text = os.fspath(path)
    claim = writable if claim is None else claim
    identity = identify(text)
    flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC
    if claim and identity.kind == "block":
        flags |= os.O_EXCL
    try:
        fd = os.open(text, flags)
    except OSError as error:
        if error.errno == errno.EBUSY:
            raise MemberClaimedError(
                f"member {text} is in use (mounted, or opened exclusively by another process)"
            ) from error
        raise MemberError(f"cannot open member {text}: {error.strerror}") from error
    try:
        st = os.fstat(fd)
        if claim and identity.kind == "file":
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise MemberClaimedError(
                    f"member {text} is locked by another process or another open array"
                ) from None
        size = device_size(fd, st)
    except BaseException:
        os.close(fd)
        raise
    log.debug("member_opened", path=text, size=size, writable=writable, claimed=claim)
    return Member(text, fd, size, _identity_of(text, st), writable)


def real_path(path: str | os.PathLike[str]) -> str:
    """Return the canonical absolute path, for matching a member named by path."""
    return str(Path(path).resolve())
