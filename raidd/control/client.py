"""The control socket client that raidctl uses."""

from __future__ import annotations

import itertools
import json
import os
import socket
import stat
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from raidd.control.listener import DEFAULT_SOCKET
from raidd.control.protocol import (
    ERROR_NAMES,
    JSONRPC,
    MAX_RESPONSE_LINE,
    encode,
)
from raidd.control.stream import STREAM_METHOD, Frame
from raidd.errors import EXIT_USAGE, RaiddError, RequestError

FrameCallback = Callable[[Frame], None]


def default_socket_path(environ: Mapping[str, str] | None = None) -> Path:
    """Return `$RAIDD_SOCKET`, or /run/raidd/control.sock when it is unset."""
    env = os.environ if environ is None else environ
    return Path(env.get("RAIDD_SOCKET") or DEFAULT_SOCKET)


class RemoteError(RaiddError):
    """An error response from the daemon.

    Attributes:
        code: the JSON-RPC error code.
        data: the error's `data` member, or None.
        exit_code: the exit code of the daemon-side error when the response
            names one, else 2.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data
        if isinstance(data, dict) and type(data.get("exit_code")) is int:
            self.exit_code = data["exit_code"]
        else:
            self.exit_code = EXIT_USAGE

    @property
    def name(self) -> str:
        return ERROR_NAMES.get(self.code, "error")


class ControlConnectionError(RequestError):
    """The control socket cannot be reached, or the connection broke."""


class ControlClient:
    """A connection to the raidd control socket.

    Args:
        path: the socket; `default_socket_path()` by default.
        timeout: seconds to wait for each piece of a reply; None waits
            forever (a followed job).
    """

    def __init__(self, path: Path | str | None = None, *, timeout: float | None = 30.0) -> None:
        self.path = Path(path) if path is not None else default_socket_path()
        self._sock: socket.socket | None = None
        self._timeout = timeout
        self._buffer = bytearray()
        self._ids = itertools.count(1)
        # Set once a response arrives, so that a malformed reply can be reported as such.
        self.replied = False

    @property
    def timeout(self) -> float | None:
        """Seconds to wait for each piece of a reply; None waits forever."""
        return self._timeout

    @timeout.setter
    def timeout(self, seconds: float | None) -> None:
        # Applied to an open connection too: raidctl connects before a subcommand sets it.
        self._timeout = seconds
        if self._sock is not None:
            self._sock.settimeout(seconds)

    def connect(self) -> ControlClient:
        """Connect to the socket.

        Raises:
            ControlConnectionError: the socket is missing, refuses or is not accessible.
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(self.timeout)
        try:
            sock.connect(os.fspath(self.path))
        except OSError as error:
            sock.close()
            raise ControlConnectionError(
                f"cannot connect to the raidd control socket {self.path}: "
                f"{_connect_problem(self.path, error)}"
            ) from None
        self._sock = sock
        return self

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> ControlClient:
        if self._sock is None:
            self.connect()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        on_frame: FrameCallback | None = None,
    ) -> Any:
        """Send a request and return its result, passing stream frames to `on_frame`.

        Raises:
            RemoteError: the daemon returned an error.
            ControlConnectionError: the connection broke or timed out.
        """
        reply = self.stream(method, params)
        for frame in reply:
            if on_frame is not None:
                on_frame(frame)
        return reply.result

    def stream(self, method: str, params: dict[str, Any] | None = None) -> StreamedReply:
        """Send a request and return its reply: iterate it for the frames, then read `result`.

        Raises:
            RemoteError: the daemon rejected the caller before reading the request.
            ControlConnectionError: the request could not be sent.
        """
        request_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": JSONRPC, "id": request_id, "method": method}
        if params:
            message["params"] = params
        try:
            self.send_line(encode(message))
        except ControlConnectionError:
            # A server that rejects a caller (access denied, too many
            # connections) replies and closes at once, possibly before the
            # request is sent: its reply explains the broken pipe.
            self._raise_pending_error()
            raise
        return StreamedReply(self, request_id)

    def _raise_pending_error(self) -> None:
        """Raise the error response the server sent before closing, if one is buffered."""
        try:
            reply = self.read_message()
        except ControlConnectionError:
            return
        error = reply.get("error")
        if isinstance(error, dict):
            raise _remote_error(error)

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        """Send a notification (a request without an id); the daemon sends no response."""
        message: dict[str, Any] = {"jsonrpc": JSONRPC, "method": method}
        if params:
            message["params"] = params
        self.send_line(encode(message))

    def send_line(self, data: bytes) -> None:
        """Send raw bytes; the tests use it to send malformed lines."""
        sock = self._require()
        try:
            sock.sendall(data)
        except OSError as error:
            raise ControlConnectionError(f"sending to {self.path} failed: {error}") from None

    def read_message(self) -> dict[str, Any]:
        """Read and decode the next line from the daemon.

        Raises:
            ControlConnectionError: the connection closed, timed out, or
                sent a line that is not a JSON object or is too long.
        """
        line = self._read_line()
        try:
            message = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ControlConnectionError(f"invalid reply from {self.path}: {error}") from None
        if not isinstance(message, dict):
            raise ControlConnectionError(f"invalid reply from {self.path}: not an object")
        return message

    def _read_line(self) -> bytes:
        sock = self._require()
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) > MAX_RESPONSE_LINE:
                raise ControlConnectionError(
                    f"reply line from {self.path} is over {MAX_RESPONSE_LINE} bytes"
                )
            try:
                chunk = sock.recv(64 * 1024)
            except TimeoutError:
                raise ControlConnectionError(
                    f"no reply from {self.path} within {sock.gettimeout():g} s; the daemon "
                    "may still finish the request: check its log or `raidctl status`"
                ) from None
            except OSError as error:
                raise ControlConnectionError(f"reading from {self.path} failed: {error}") from None
            if not chunk:
                raise ControlConnectionError(f"raidd closed the connection on {self.path}")
            self._buffer += chunk

    def _require(self) -> socket.socket:
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        return self._sock


def _connect_problem(path: Path, error: OSError) -> str:
    """Explain a failed connect(2) by what is at `path`, with the fix."""
    other_socket = "set --socket or RAIDD_SOCKET to the [control] socket of its configuration"
    if isinstance(error, FileNotFoundError):
        return f"no such file; is raidd running? ({other_socket})"
    if isinstance(error, PermissionError):
        return (
            "permission denied; the socket serves root and the members of its "
            "[control] group: run as root or as a member of that group"
        )
    try:
        info = path.stat()
    except OSError:
        info = None
    if info is not None and not stat.S_ISSOCK(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a socket"
        return f"it is {kind}; {other_socket}"
    if isinstance(error, ConnectionRefusedError):
        return "no process listens on it; start raidd (a socket left by a stopped raidd)"
    return f"{error.strerror}; is raidd running? ({other_socket})"


def _remote_error(error: dict[str, Any]) -> RemoteError:
    code = error.get("code")
    return RemoteError(
        code if type(code) is int else 0,
        str(error.get("message", "error without a message")),
        error.get("data"),
    )


class StreamedReply:
    """The reply to one request: its stream frames as an iterator, then `result`.

    Iteration ends at the response; `result` is set then. An error
    response raises `RemoteError` from the iteration.
    """

    def __init__(self, client: ControlClient, request_id: int) -> None:
        self._client = client
        self.request_id = request_id
        self.result: Any = None
        self.done = False

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        while not self.done:
            reply = self._client.read_message()
            if reply.get("method") == STREAM_METHOD:
                frame = Frame.from_params(reply.get("params") or {})
                if frame.request == self.request_id:
                    return frame
                continue
            if "id" not in reply:
                # A notification other than a stream frame: nothing waits for it.
                continue
            if reply["id"] not in (self.request_id, None):
                raise ControlConnectionError(
                    f"unexpected reply from {self._client.path}: id {reply['id']!r}, "
                    f"but the request had id {self.request_id}"
                )
            self.done = True
            self._client.replied = True
            if "error" in reply:
                raise _remote_error(reply["error"] if isinstance(reply["error"], dict) else {})
            self.result = reply.get("result")
        raise StopIteration
