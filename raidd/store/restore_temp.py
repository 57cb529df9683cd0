"""Temporary names of the restore writer, and removal of those a killed restore left.

A file is written as `.raidd-restore-<pid>-<16 hex digits>` in its final
directory and then renamed. A restore killed before the rename leaves
that name behind. A later restore into the same directory removes such
files: only names of exactly this pattern, only when the pid in the name
is no longer running (a restore that runs beside it keeps its files), and
never a directory.
"""

import os
import re
import secrets
import stat

import structlog

__all__ = ["remove_stale_temporaries", "temporary_name"]

log = structlog.get_logger(__name__)

_PREFIX = b".raidd-restore-"
_PATTERN = re.compile(rb"\.raidd-restore-([0-9]{1,10})-[0-9a-f]{16}")


def temporary_name() -> bytes:
    """Return a new temporary name that carries this process's pid."""
    return _PREFIX + f"{os.getpid()}-{secrets.token_hex(8)}".encode()


def remove_stale_temporaries(fd: int, where: bytes) -> list[bytes]:
    """Remove the stale temporary files in the open directory `fd`; return their names.

    Args:
        fd: the directory, opened by the writer.
        where: its path relative to the target, for the log.
    """
    removed = []
    # os.listdir() of a descriptor returns str names.
    for name in map(os.fsencode, os.listdir(fd)):
        match = _PATTERN.fullmatch(name)
        if match is None or _process_running(int(match.group(1))):
            continue
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                continue
            os.unlink(name, dir_fd=fd)
        except FileNotFoundError:
            continue
        removed.append(name)
        log.info("restore_stale_temporary_removed", path=where + b"/" + name)
    return removed


def _process_running(pid: int) -> bool:
    """Tell whether a process with this pid exists in this pid namespace."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        # It exists but belongs to another user.
        return True
    return True
