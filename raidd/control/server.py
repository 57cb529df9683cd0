"""The control socket server: one thread per connection, one request at a time on each.

A connection's requests are read line by line and replied to in order. A
client may send the next request before the last response arrived. What a
misbehaving client meets:

- a line that is not a valid request: an error response, and the
  connection goes on;
- a line longer than `Limits.max_line`: a `LINE_TOO_LONG` error, the rest
  of the line is skipped, and the connection goes on;
- no request within `idle_timeout`, or a line not completed within
  `line_timeout`: a `TIMED_OUT` error, then the connection is closed;
- a reply it does not read within `write_timeout`: the connection is closed;
- more than `max_connections` open connections, of which the last
  `root_reserve` are kept for root: a `TOO_MANY_CONNECTIONS` error, then
  the new connection is closed;
- a caller that is neither root nor in the control group: an
  `ACCESS_DENIED` error, then the connection is closed.

None of them stops the server or delays another connection.
"""

from __future__ import annotations

import hashlib
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import structlog

from raidd.control.connection import Connection, ConnectionClosedError, Limits
from raidd.control.jobs import JobRegistry
from raidd.control.listener import BoundSocket, bind_control_socket
from raidd.control.peer import Access, Peer, Policy, peer_credentials
from raidd.control.protocol import (
    ACCESS_DENIED,
    CONNECTION_LOST,
    INTERNAL_ERROR,
    MAX_RESPONSE_LINE,
    SHUTTING_DOWN,
    TOO_MANY_CONNECTIONS,
    Request,
    RpcError,
    encode,
    error_from_exception,
    error_message,
    notification_message,
    parse_request,
    result_message,
)
from raidd.control.registry import Method, Registry
from raidd.control.stream import (
    FRAME_BYTES,
    STREAM_METHOD,
    encode_data,
    hash_zeros,
    path_fields,
)
from raidd.errors import RaiddError

log = structlog.get_logger(__name__)

FRAME_KEYS = frozenset({"request", "seq", "kind"})


class Call:
    """The context of one request, passed to its handler as the first argument."""

    def __init__(
        self, server: ControlServer, connection: Connection, request: Request, method: Method
    ) -> None:
        self.server = server
        self.connection = connection
        self.request = request
        self.method = method
        self.peer = connection.peer
        self.progress_interval = server.limits.progress_interval
        # The handler's return value once it returned, for the request observer.
        self.result: Any = None
        self._seq = 0

    @property
    def jobs(self) -> JobRegistry:
        return self.server.jobs

    def may_call(self, method: Method) -> bool:
        """Tell whether this call's caller has the access `method` requires."""
        return self.connection.access is Access.ADMIN or method.access is Access.READ

    def check_connected(self) -> None:
        """Raise when the client hung up or the server is stopping; long handlers call it.

        Raises:
            RpcError: `SHUTTING_DOWN` while the server closes.
            ConnectionClosedError: the client closed the connection.
        """
        if self.server.closing:
            raise RpcError(SHUTTING_DOWN, "raidd is shutting down; retry once it is back")
        if not self.connection.connected():
            raise ConnectionClosedError("client closed the connection")

    def emit(self, kind: str, params: dict[str, Any] | None = None) -> None:
        """Send one stream frame of `kind` before the final response.

        Frames of a notification request (one without an id) are dropped,
        since nothing could tell them from another request's.

        Raises:
            ValueError: `params` uses a key of the frame itself.
            ConnectionClosedError: the client went away.
        """
        payload = params or {}
        reserved = FRAME_KEYS.intersection(payload)
        if reserved:
            raise ValueError(f"stream frame params cannot use the keys {sorted(reserved)}")
        if self.request.is_notification:
            return
        frame = {"request": self.request.id, "seq": self._seq, "kind": kind, **payload}
        self._seq += 1
        self.connection.send(notification_message(STREAM_METHOD, frame))

    def emit_data(self, data: bytes) -> None:
        """Send bytes as `data` frames of at most FRAME_BYTES each."""
        view = memoryview(data)
        for start in range(0, len(view), FRAME_BYTES):
            self.emit("data", {"data": encode_data(bytes(view[start : start + FRAME_BYTES]))})

    def send_file(
        self, path: bytes, pieces: Iterable[tuple[int, bytes]], *, size: int, **header: Any
    ) -> int:
        """Stream one file: a `file` frame, `data` and `hole` frames, and a `file_end` frame.

        Args:
            path: the file's path as bytes (not necessarily UTF-8).
            pieces: the content as (offset, bytes) in increasing offset order;
                the gaps between them and after the last one are holes.
            size: the file's size in bytes.
            header: further `file` frame members (mode, mtime_ns, ...).

        Returns:
            The number of content bytes sent (holes not counted).

        Raises:
            ValueError: pieces overlap or run past `size`.
        """
        self.emit("file", {**path_fields(path), "size": size, **header})
        digest = hashlib.sha256()
        position = sent = 0
        pending = bytearray()
        for offset, data in pieces:
            if offset < position + len(pending):
                raise ValueError(f"file {path!r}: piece at {offset} overlaps the previous one")
            if offset > position + len(pending):
                self._flush_data(pending)
                position += len(pending)
                pending.clear()
                self._emit_hole(digest, offset - position)
                position = offset
            digest.update(data)
            sent += len(data)
            pending += data
            while len(pending) >= FRAME_BYTES:
                self.emit_data(bytes(pending[:FRAME_BYTES]))
                del pending[:FRAME_BYTES]
                position += FRAME_BYTES
            self.check_connected()
        self._flush_data(pending)
        position += len(pending)
        if position > size:
            raise ValueError(f"file {path!r}: content of {position} bytes exceeds size {size}")
        self._emit_hole(digest, size - position)
        self.emit("file_end", {"size": size, "sha256": digest.hexdigest()})
        return sent

    def _flush_data(self, pending: bytearray) -> None:
        if pending:
            self.emit_data(bytes(pending))

    def _emit_hole(self, digest: Any, length: int) -> None:
        if length > 0:
            hash_zeros(digest, length)
            self.emit("hole", {"length": length})


RequestObserver = Callable[[Call, RpcError | None], None]


class ControlServer:
    """A control socket server that dispatches requests to a method registry.

    Start it with `start()` (or `with`); `close()` stops accepting, lets
    requests in progress finish for `Limits.close_grace` seconds, then
    closes every connection and removes the socket.
    """

    def __init__(
        self,
        path: Path,
        registry: Registry,
        *,
        group: int | None = None,
        mode: int | None = None,
        limits: Limits | None = None,
        jobs: JobRegistry | None = None,
        on_request: RequestObserver | None = None,
    ) -> None:
        self.path = Path(path)
        self.registry = registry
        self.policy = Policy(group)
        self.group = group
        self.mode = mode
        self.limits = limits or Limits()
        self.jobs = jobs if jobs is not None else JobRegistry()
        self.on_request = on_request
        self.closing = False
        self._bound: BoundSocket | None = None
        self._lock = threading.Lock()
        self._connections: dict[Connection, threading.Thread] = {}
        self._accept_thread: threading.Thread | None = None
        self._wake_reader, self._wake_writer = socket.socketpair()

    def start(self) -> None:
        """Bind the socket and start accepting connections in a thread.

        Raises:
            ArrayBusyError: another live server holds the socket's lock.
            ConfigError: the socket path cannot be used.
        """
        self._bound = bind_control_socket(self.path, group=self.group, mode=self.mode)
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name="control-accept", daemon=True
        )
        self._accept_thread.start()

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    def close(self) -> None:
        """Stop accepting, finish or abandon the requests in progress, close and clean up."""
        if self.closing:
            return
        self.closing = True
        self._wake_writer.send(b"x")
        if self._accept_thread is not None:
            self._accept_thread.join()
        with self._lock:
            connections = dict(self._connections)
        for connection in connections:
            _shutdown(connection.sock, socket.SHUT_RD)
        deadline = time.monotonic() + self.limits.close_grace
        for thread in connections.values():
            thread.join(max(deadline - time.monotonic(), 0))
        for connection, thread in connections.items():
            if thread.is_alive():
                _shutdown(connection.sock, socket.SHUT_RDWR)
                thread.join()
        if self._bound is not None:
            self._bound.close()
        self._wake_reader.close()
        self._wake_writer.close()
        log.info("control_socket_closed", socket=str(self.path))

    def _accept_loop(self) -> None:
        assert self._bound is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._bound.sock, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while not self.closing:
                for key, _ in selector.select():
                    if key.fileobj is self._bound.sock and not self.closing:
                        self._accept_one()

    def _accept_one(self) -> None:
        assert self._bound is not None
        try:
            sock, _ = self._bound.sock.accept()
        except OSError as error:
            # EMFILE and the like: the socket stays readable, so back off briefly.
            log.error("control_accept_failed", error=str(error))
            time.sleep(0.1)
            return
        try:
            peer = peer_credentials(sock)
        except OSError as error:
            log.error("control_peer_credentials_failed", error=str(error))
            sock.close()
            return
        access = self.policy.access_of(peer)
        if access is None:
            self._reject_stranger(sock, peer)
            return
        # The last root_reserve places are for root, so that callers of the
        # read methods cannot lock the administrator out.
        limit = self.limits.max_connections
        if peer.uid != 0:
            limit -= self.limits.root_reserve
        with self._lock:
            full = len(self._connections) >= limit
        if full:
            log.warning("control_too_many_connections", uid=peer.uid, limit=limit)
            busy = RpcError(
                TOO_MANY_CONNECTIONS, f"{limit} connections are open already; retry later"
            )
            _reject_now(sock, busy)
            return
        connection = Connection(sock, peer, access, self.limits)
        thread = threading.Thread(
            target=self._serve, args=(connection,), name=f"control-{peer.pid}", daemon=True
        )
        with self._lock:
            self._connections[connection] = thread
        thread.start()

    def _reject_stranger(self, sock: socket.socket, peer: Peer) -> None:
        log.warning("control_access_denied", pid=peer.pid, uid=peer.uid, gid=peer.gid)
        if self.group is None:
            rule = "only root may use this socket"
        else:
            rule = f"only root and members of group {self.group} may use this socket"
        _reject_now(sock, RpcError(ACCESS_DENIED, f"access denied for uid {peer.uid}: {rule}"))

    def _serve(self, connection: Connection) -> None:
        peer = connection.peer
        assert connection.access is not None
        try:
            log.debug(
                "control_connected", pid=peer.pid, uid=peer.uid, access=connection.access.value
            )
            self._serve_requests(connection)
        except ConnectionClosedError as error:
            log.info("control_connection_lost", pid=peer.pid, uid=peer.uid, error=str(error))
        except Exception:
            log.exception("control_connection_crashed", pid=peer.pid, uid=peer.uid)
        finally:
            connection.sock.close()
            with self._lock:
                self._connections.pop(connection, None)

    def _serve_requests(self, connection: Connection) -> None:
        while True:
            try:
                line = connection.read_line()
            except RpcError as error:
                log.info("control_timed_out", pid=connection.peer.pid, error=error.message)
                connection.send_error(None, error)
                return
            if line is None:
                return
            self._handle(connection, line)

    def _handle(self, connection: Connection, line: bytes) -> None:
        try:
            request = parse_request(line)
        except RpcError as error:
            log.debug("control_request_invalid", pid=connection.peer.pid, error=error.message)
            connection.send_error(error.request_id, error)
            return
        call: Call | None = None
        outcome: RpcError | None = None
        try:
            method = self.registry.get(request.method)
            call = Call(self, connection, request, method)
            if not call.may_call(method):
                raise RpcError(
                    ACCESS_DENIED,
                    f"method {method.name!r} requires root; "
                    f"uid {connection.peer.uid} may call read methods only",
                )
            params = method.bind(request.params)
            call.result = method.handler(call, **params)
            reply = encode(result_message(request.id, call.result))
            if len(reply) > MAX_RESPONSE_LINE:
                log.error("control_result_too_large", method=method.name, size=len(reply))
                raise RpcError(
                    INTERNAL_ERROR,
                    f"result of {method.name!r} is over {MAX_RESPONSE_LINE} bytes; "
                    "the method must stream it",
                )
        except ConnectionClosedError as error:
            self._observe(call, RpcError(CONNECTION_LOST, f"connection lost: {error}"))
            raise
        except RpcError as error:
            outcome = error
        except RaiddError as error:
            outcome = error_from_exception(error)
        except Exception:
            log.exception("control_method_crashed", method=request.method)
            outcome = RpcError(INTERNAL_ERROR, "internal error; the raidd log has the details")
        self._observe(call, outcome)
        if outcome is not None:
            log.info(
                "control_request_failed",
                method=request.method,
                pid=connection.peer.pid,
                uid=connection.peer.uid,
                code=outcome.code,
                error=outcome.message,
            )
        if request.is_notification:
            return
        if outcome is not None:
            connection.send_error(request.id, outcome)
        else:
            connection.send_line(reply)

    def _observe(self, call: Call | None, outcome: RpcError | None) -> None:
        if self.on_request is None or call is None:
            return
        try:
            self.on_request(call, outcome)
        except Exception:
            log.exception("control_observer_failed", method=call.method.name)


def _reject_now(sock: socket.socket, error: RpcError) -> None:
    """Send one error line to a connection that is not served, and close it."""
    try:
        # A short line fits in the new socket's empty buffer, so the send
        # does not block, and a full buffer fails rather than waits.
        sock.setblocking(False)
        sock.send(encode(error_message(None, error)))
    except OSError as send_error:
        log.info("control_reject_send_failed", error=str(send_error))
    finally:
        sock.close()


def _shutdown(sock: socket.socket, how: int) -> None:
    try:
        sock.shutdown(how)
    except OSError as error:
        log.debug("control_shutdown_failed", error=str(error))
