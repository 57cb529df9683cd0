"""Creating the control socket file: its directory, lock, mode and group.

A lock file beside the socket (`control.sock.lock`) is held with `flock()`
for as long as a server listens, and records its pid. A socket file found
at start-up is removed only after that lock was taken, which proves that
the daemon that created it is gone. The socket is bound, given its mode and
group, and only then set listening, so no client can connect while it
still has the permissions of the umask.
"""

from __future__ import annotations

import errno
import fcntl
import grp
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

import structlog

from raidd.errors import ArrayBusyError, ConfigError

log = structlog.get_logger(__name__)

DEFAULT_SOCKET = Path("/run/raidd/control.sock")
# sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107


def resolve_group(name: str) -> int:
    """Return the gid of the `[control] group` named in the configuration.

    Raises:
        ConfigError: no such group exists.
    """
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ConfigError(
            f"[control] group {name!r} does not exist; create it (systemd-sysusers "
            "installs the raidd group) or remove the key to serve root only"
        ) from None


@dataclass
class BoundSocket:
    """A listening control socket and the lock that proves this process owns it."""

    sock: socket.socket
    path: Path
    lock_fd: int
    inode: int

    def close(self) -> None:
        """Close the socket, remove its file if it is still this one, and release the lock."""
        self.sock.close()
        try:
            if self.path.lstat().st_ino == self.inode:
                self.path.unlink()
        except FileNotFoundError:
            log.warning("control_socket_already_removed", socket=str(self.path))
        os.close(self.lock_fd)


def _make_directories(directory: Path) -> None:
    """Create missing directories with mode 0755 whatever the umask, so groups reach the socket."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for created in reversed(missing):
        created.mkdir(mode=0o755, exist_ok=True)
        os.chmod(created, 0o755)


def _take_lock(lock_path: Path, socket_path: Path) -> int:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise ArrayBusyError(
            f"another raidd (pid {holder}) serves the control socket {socket_path}; "
            "stop it or configure another [control] socket"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def _remove_stale(path: Path) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ConfigError(
            f"[control] socket {path} exists and is not a socket; remove it or choose another path"
        )
    path.unlink()
    log.info("stale_control_socket_removed", socket=str(path))


def bind_control_socket(
    path: Path,
    *,
    group: int | None = None,
    mode: int | None = None,
    backlog: int = 64,
) -> BoundSocket:
    """Create, lock and bind the control socket, and start listening.

    Args:
        path: the socket file; its directory is created (mode 0755) when missing.
        group: the gid that may read status and restore; None serves root only.
        mode: the socket file's mode; 0660 with a group and 0600 without by
            default. Tests pass 0666 to reach the server's own check.
        backlog: the listen() queue length.

    Raises:
        ArrayBusyError: a live process holds the socket's lock.
        ConfigError: the path is too long for a Unix socket, or a file that
            is not a socket is in the way.
    """
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ConfigError(
            f"[control] socket {path} is longer than {MAX_SOCKET_PATH} bytes, "
            "the limit of a Unix socket path; choose a shorter path"
        )
    _make_directories(path.parent)
    lock_fd = _take_lock(path.with_name(path.name + ".lock"), path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        _remove_stale(path)
        sock.bind(os.fspath(path))
        if mode is None:
            mode = 0o600 if group is None else 0o660
        os.chmod(path, mode)
        if group is not None:
            os.chown(path, -1, group)
        sock.listen(backlog)
        inode = path.lstat().st_ino
    except OSError as error:
        sock.close()
        os.close(lock_fd)
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise ConfigError(
                f"cannot create the control socket {path}: {error.strerror}"
            ) from None
        raise
    except BaseException:
        sock.close()
        os.close(lock_fd)
        raise
    log.info("control_socket_listening", socket=str(path), group=group)
    return BoundSocket(sock, path, lock_fd, inode)
