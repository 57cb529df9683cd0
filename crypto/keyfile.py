"""Key files: the whole file, as raw bytes, is the secret of a keyfile keyslot."""

import errno
import os
import stat

from crypto.errors import KeyFileError
from crypto.keys import fill_random

MIN_KEYFILE_SIZE = 32
# A key file larger than this is almost surely the wrong file (cryptsetup
# uses the same 8 MiB default maximum).
MAX_KEYFILE_SIZE = 8 * 1024 * 1024
NEW_KEYFILE_SIZE = 32
NEW_KEYFILE_MODE = 0o400


def read_keyfile(path: str | os.PathLike[str]) -> bytearray:
    """Read a whole key file as raw bytes, with no decoding and no newline stripping.

    Like ssh with a private key, the file is rejected when its group or
    others have any permission on it (mode & 0o077), because such a key
    has to be treated as already leaked.

    Args:
        path: the key file; symbolic links are followed and the target is checked.

    Returns:
        The file's bytes in a bytearray the caller should wipe after use.

    Raises:
        KeyFileError: the file is missing or unreadable, not a regular file,
            accessible by group or others, shorter than 32 bytes, larger than
            8 MiB, or changed size while it was read.
    """
    try:
        # O_NONBLOCK keeps a FIFO at the path from blocking the open; it has
        # no effect on the regular file that the checks below require.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as error:
        raise KeyFileError(f"cannot open key file {path}: {error.strerror}") from error
    try:
        info = os.fstat(fd)
        _check_keyfile_stat(path, info)
        return _read_exactly(fd, path, info.st_size)
    finally:
        os.close(fd)


def _check_keyfile_stat(path: str | os.PathLike[str], info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(f"key file {path} is not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"key file {path} has mode {mode:04o}, so group or others can access it: "
            f"run chmod 600 {path}, and treat the key as leaked if others could read it"
        )
    if info.st_size < MIN_KEYFILE_SIZE:
        raise KeyFileError(
            f"key file {path} is {info.st_size} bytes, but a key file must contain at least "
            f"{MIN_KEYFILE_SIZE} bytes: create one with raidd create --new-keyfile"
        )
    if info.st_size > MAX_KEYFILE_SIZE:
        raise KeyFileError(
            f"key file {path} is {info.st_size} bytes, more than the {MAX_KEYFILE_SIZE}-byte "
            "maximum: check that the path names the key file"
        )


def _read_exactly(fd: int, path: str | os.PathLike[str], size: int) -> bytearray:
    secret = bytearray(size)
    view = memoryview(secret)
    filled = 0
    try:
        while filled < size:
            count = os.readv(fd, [view[filled:]])
            if count == 0:
                raise KeyFileError(f"key file {path} shrank while it was read: read it again")
            filled += count
        if os.read(fd, 1):
            raise KeyFileError(f"key file {path} grew while it was read: read it again")
    except OSError as error:
        secret[:] = bytes(size)
        raise KeyFileError(f"cannot read key file {path}: {error.strerror}") from error
    except KeyFileError:
        secret[:] = bytes(size)
        raise
    finally:
        view.release()
    return secret


def write_new_keyfile(path: str | os.PathLike[str]) -> None:
    """Create a key file of 32 random raw bytes with mode 0400.

    The file and its directory are fsynced before this returns, so an array
    created with the key never outlives its key file after a crash.

    Args:
        path: where to create the file; must not exist (nor be a symbolic link).

    Raises:
        KeyFileError: the path exists, its directory is missing or not
            writable, or writing or syncing fails (a partial file is removed).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, NEW_KEYFILE_MODE)
    except FileExistsError as error:
        raise KeyFileError(
            f"key file {path} already exists: choose a new path, or use the existing file "
            "with --keyfile"
        ) from error
    except OSError as error:
        raise KeyFileError(f"cannot create key file {path}: {error.strerror}") from error
    secret = bytearray(NEW_KEYFILE_SIZE)
    try:
        fill_random(secret)
        os.fchmod(fd, NEW_KEYFILE_MODE)
        if os.write(fd, secret) != NEW_KEYFILE_SIZE:
            raise OSError(errno.EIO, "short write")
        os.fsync(fd)
    except OSError as error:
        os.close(fd)
        os.unlink(path)
        raise KeyFileError(f"cannot write key file {path}: {error.strerror}") from error
    finally:
        secret[:] = bytes(NEW_KEYFILE_SIZE)
    os.close(fd)
    _fsync_directory(path)


def _fsync_directory(path: str | os.PathLike[str]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as error:
        raise KeyFileError(
            f"created key file {path} but cannot sync its directory {directory}: {error.strerror}"
        ) from error
