"""Caller credentials of a control connection, and the access they grant.

The kernel records the connecting process's credentials when it calls
`connect()`: `SO_PEERCRED` returns its pid, uid and gid (a `struct ucred`
of three 32-bit ints) and `SO_PEERGROUPS` (Linux 4.13 and later) its
supplementary groups as an array of 32-bit `gid_t`. Neither can be forged
by the client, and a process that changes its ids after connecting keeps
the ids it connected with.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import errno
import os
import socket
import struct
from dataclasses import dataclass

# Linux's value in <asm-generic/socket.h>; Python 3.11's socket module lacks the name.
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
_UCRED = struct.Struct("=iII")
_GID_SIZE = 4
# CPython's socket.getsockopt() accepts buffers of at most 1024 bytes (256 groups).
_PYTHON_MAX_BUFLEN = 1024
# NGROUPS_MAX on Linux since 2.6.4.
_NGROUPS_MAX = 65536


class Access(enum.Enum):
    """The access level a method requires of its caller."""

    READ = "read"  # members of the control group, and root
    ADMIN = "admin"  # root only


@dataclass(frozen=True)
class Peer:
    """The credentials a client connected with."""

    pid: int
    uid: int
    gid: int
    groups: tuple[int, ...]

    def describe(self) -> dict[str, int]:
        return {"pid": self.pid, "uid": self.uid, "gid": self.gid}


def peer_credentials(sock: socket.socket) -> Peer:
    """Read the pid, uid, gid and supplementary groups of a connected Unix socket's peer.

    Raises:
        OSError: the socket is not a connected AF_UNIX socket.
    """
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return Peer(pid, uid, gid, peer_groups(sock))


def peer_groups(sock: socket.socket) -> tuple[int, ...]:
    """Read the peer's supplementary groups with `SO_PEERGROUPS`."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, _PYTHON_MAX_BUFLEN)
    except OSError as error:
        if error.errno != errno.ERANGE:
            raise
        raw = peer_groups_large(sock.fileno())
    return parse_gids(raw)


def parse_gids(raw: bytes) -> tuple[int, ...]:
    """Parse an array of native-endian 32-bit gids."""
    if len(raw) % _GID_SIZE:
        raise ValueError(f"SO_PEERGROUPS returned {len(raw)} bytes, not a whole number of gids")
    count = len(raw) // _GID_SIZE
    return struct.unpack(f"={count}I", raw)


def peer_groups_large(fd: int) -> bytes:
    """Call getsockopt(2) through libc for a peer with more than 256 groups.

    When the buffer is too small, the kernel fails with ERANGE and stores
    the size it needs in the length argument. The second call with that
    size succeeds, because the groups were fixed at connect time.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    size = ctypes.c_uint32(0)
    buffer = ctypes.create_string_buffer(0)
    for _ in range(2):
        result = libc.getsockopt(fd, socket.SOL_SOCKET, SO_PEERGROUPS, buffer, ctypes.byref(size))
        if result == 0:
            return buffer.raw[: size.value]
        code = ctypes.get_errno()
        if code != errno.ERANGE or size.value > _NGROUPS_MAX * _GID_SIZE:
            raise OSError(code, os.strerror(code))
        buffer = ctypes.create_string_buffer(size.value)
    raise OSError(errno.ERANGE, "SO_PEERGROUPS size changed between calls")


@dataclass(frozen=True)
class Policy:
    """The access rule: root always, and the members of `group` when it is set."""

    group: int | None = None

    def access_of(self, peer: Peer) -> Access | None:
        """Return the highest access the peer has, or None for a stranger."""
        if peer.uid == 0:
            return Access.ADMIN
        if self.group is not None and (peer.gid == self.group or self.group in peer.groups):
            return Access.READ
        return None
