"""One control connection: reading request lines under limits, writing reply lines.

What a misbehaving client meets here is listed in the docstring of
raidd.control.server; this module enforces the line, time and write limits.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import structlog

from raidd.control.peer import Access, Peer
from raidd.control.protocol import (
    LINE_TOO_LONG,
    MAX_REQUEST_LINE,
    TIMED_OUT,
    RpcError,
    encode,
    error_message,
)

log = structlog.get_logger(__name__)

_RECV_BYTES = 64 * 1024


@dataclass(frozen=True)
class Limits:
    """Bounds on what one client may cost the server; times in seconds.

    The defaults are judgment, not measurement: a few operators and
    monitors talk to one daemon, raidctl sends each request as one write,
    and a person at a terminal may leave a connection idle for minutes.
    """

    # One thread per connection; a host rarely has more than a few clients.
    max_connections: int = 64
    # Places of max_connections that only root may take.
    root_reserve: int = 4
    max_line: int = MAX_REQUEST_LINE
    # Waiting for the next request on an open connection.
    idle_timeout: float = 300.0
    # From the first byte of a request line to its newline.
    line_timeout: float = 10.0
    # For the client to take one reply line off the socket.
    write_timeout: float = 30.0
    # Minimum time between two progress frames of a followed job.
    progress_interval: float = 0.5
    # How long close() lets requests in progress finish.
    close_grace: float = 5.0


class ConnectionClosedError(Exception):
    """The client went away, or stopped reading, while the server was sending."""


class Connection:
    """One accepted client: its socket, credentials, access and read buffer."""

    def __init__(self, sock: socket.socket, peer: Peer, access: Access | None, limits: Limits):
        self.sock = sock
        self.peer = peer
        self.access = access
        self.limits = limits
        self._buffer = bytearray()
        self._send_lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        """Send one message line within the write timeout.

        Raises:
            ConnectionClosedError: the client closed the connection or did
                not read the line in time.
        """
        self.send_line(encode(message))

    def send_line(self, data: bytes) -> None:
        """Send one encoded line; raises as `send()` does."""
        with self._send_lock:
            try:
                self.sock.settimeout(self.limits.write_timeout)
                self.sock.sendall(data)
            except TimeoutError:
                raise ConnectionClosedError("client did not read its reply in time") from None
            except OSError as error:
                raise ConnectionClosedError(str(error)) from None

    def send_error(self, request_id: Any, error: RpcError) -> None:
        self.send(error_message(request_id, error))

    def read_line(self) -> bytes | None:
        """Return the next request line without its newline, or None at end of input.

        A line over the limit gets a `LINE_TOO_LONG` error and is skipped here.

        Raises:
            RpcError: `TIMED_OUT` when the client stays idle or leaves a line
                unfinished for too long.
            ConnectionClosedError: a reply to a skipped line could not be sent.
        """
        limits = self.limits
        skipping = False
        idle_since = time.monotonic()
        line_since = idle_since if self._buffer else None
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                if skipping or end + 1 > limits.max_line:
                    if not skipping:
                        self._reject_long_line()
                    skipping = False
                    line_since = time.monotonic() if self._buffer else None
                    continue
                return line
            if len(self._buffer) >= limits.max_line:
                if not skipping:
                    self._reject_long_line()
                    skipping = True
                self._buffer.clear()
            if line_since is None and not skipping:
                deadline, what = idle_since + limits.idle_timeout, "idle"
            else:
                start = line_since if line_since is not None else idle_since
                deadline, what = start + limits.line_timeout, "line"
            chunk = self._receive(deadline, what)
            if not chunk:
                return None
            if line_since is None:
                line_since = time.monotonic()
            self._buffer += chunk

    def _receive(self, deadline: float, what: str) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining > 0:
            try:
                self.sock.settimeout(remaining)
                return self.sock.recv(_RECV_BYTES)
            except TimeoutError:
                pass
            except OSError as error:
                log.info("control_read_failed", pid=self.peer.pid, error=str(error))
                return b""
        if what == "idle":
            message = f"no request within {self.limits.idle_timeout:g} s; connection closed"
        else:
            message = f"request line not completed within {self.limits.line_timeout:g} s"
        raise RpcError(TIMED_OUT, message)

    def _reject_long_line(self) -> None:
        log.info("control_line_too_long", pid=self.peer.pid, uid=self.peer.uid)
        self.send_error(
            None,
            RpcError(
                LINE_TOO_LONG,
                f"request line longer than {self.limits.max_line} bytes; it was skipped",
            ),
        )

    def connected(self) -> bool:
        """Tell whether the client may still be reading (no hang-up seen)."""
        # POLLHUP only: a client that shut down its writing side (as `nc -N`
        # does after the request) still reads the reply.
        poller = select.poll()
        poller.register(self.sock, select.POLLHUP | select.POLLERR)
        return not poller.poll(0)
