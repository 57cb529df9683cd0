"""Streamed replies: notification frames that come before a request's final response.

A method with a long reply (restore, a followed job) sends any number of
frames, each a JSON-RPC notification of method `stream`:

    {"jsonrpc": "2.0", "method": "stream",
     "params": {"request": 4, "seq": 0, "kind": "file", ...}}

`request` is the id of the request the frame belongs to and `seq` counts
its frames from 0, so a client can tell that none is lost. The response
with the same id ends the stream. Binary content travels as `data` frames
of at most `FRAME_BYTES` bytes, base64-encoded, so no line grows past
about 64 KiB. A file is one `file` frame (its header), its `data` frames
and one `file_end` frame with its size and SHA-256.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from raidd.errors import RequestError

STREAM_METHOD = "stream"
FRAME_BYTES = 48 * 1024


class StreamError(RequestError):
    """A stream whose frames are out of order, malformed or fail their checksum."""


@dataclass(frozen=True)
class Frame:
    """One stream frame as a client receives it."""

    request: Any
    seq: int
    kind: str
    params: dict[str, Any]

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Frame:
        """Build a frame from a `stream` notification's params.

        Raises:
            StreamError: a member is missing or of the wrong type.
        """
        seq, kind = params.get("seq"), params.get("kind")
        if type(seq) is not int or not isinstance(kind, str):
            raise StreamError(f"invalid stream frame: seq {seq!r}, kind {kind!r}")
        return cls(params.get("request"), seq, kind, params)

    def data(self) -> bytes:
        """Decode a `data` frame's content.

        Raises:
            StreamError: the frame has no valid base64 `data` or is too large.
        """
        text = self.params.get("data")
        if not isinstance(text, str):
            raise StreamError(f"stream frame {self.seq} has no data")
        try:
            content = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as error:
            raise StreamError(f"stream frame {self.seq}: invalid base64: {error}") from None
        if len(content) > FRAME_BYTES:
            raise StreamError(
                f"stream frame {self.seq} carries {len(content)} bytes, over {FRAME_BYTES}"
            )
        return content


def encode_data(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def path_fields(path: bytes) -> dict[str, str]:
    """Return a path as JSON: `path` when it is UTF-8, plus `path_b64` of its bytes when not."""
    try:
        return {"path": path.decode("utf-8")}
    except UnicodeDecodeError:
        return {
            "path": path.decode("utf-8", "replace"),
            "path_b64": base64.b64encode(path).decode("ascii"),
        }


def path_from_fields(params: dict[str, Any]) -> bytes:
    """Return a path's bytes from the fields `path_fields()` made.

    Raises:
        StreamError: neither field contains a valid path.
    """
    if "path_b64" in params:
        try:
            return base64.b64decode(str(params["path_b64"]), validate=True)
        except (binascii.Error, ValueError) as error:
            raise StreamError(f"invalid path_b64: {error}") from None
    path = params.get("path")
    if not isinstance(path, str):
        raise StreamError(f"stream frame has no path: {params!r}")
    return path.encode("utf-8")


class Sink(Protocol):
    """The destination of a received file's content; raidctl's is a temporary file it renames."""

    def write(self, data: bytes) -> object: ...

    def commit(self) -> None: ...

    def discard(self) -> None: ...


@dataclass
class MemorySink:
    """A sink that keeps the content in memory."""

    header: dict[str, Any]
    content: bytearray = field(default_factory=bytearray)
    committed: bool = False

    def write(self, data: bytes) -> int:
        self.content += data
        return len(data)

    def commit(self) -> None:
        self.committed = True

    def discard(self) -> None:
        self.content.clear()


class FileStreamDecoder:
    """Reassemble `file`, `data` and `file_end` frames into files, checking size and SHA-256.

    Pass `feed` as the client's frame callback. Frames of other kinds go
    to `on_other` when given and are otherwise ignored.
    """

    def __init__(self, open_sink: Any, on_other: Any = None) -> None:
        self._open_sink = open_sink
        self._on_other = on_other
        self._expected_seq = 0
        self._sink: Sink | None = None
        self._header: dict[str, Any] | None = None
        self._hash = hashlib.sha256()
        self._size = 0
        self.completed: list[dict[str, Any]] = []

    def feed(self, frame: Frame) -> None:
        """Take the next frame.

        Raises:
            StreamError: a frame is missing or out of place, or a file's
                size or SHA-256 differs from its `file_end` frame (the
                file's sink is discarded first).
        """
        if frame.seq != self._expected_seq:
            self.abort()
            raise StreamError(f"stream frame {self._expected_seq} missing (got {frame.seq})")
        self._expected_seq += 1
        if frame.kind == "file":
            self._begin(frame)
        elif frame.kind == "data":
            self._write(frame)
        elif frame.kind == "file_end":
            self._end(frame)
        elif self._on_other is not None:
            self._on_other(frame)

    def _begin(self, frame: Frame) -> None:
        if self._sink is not None:
            self.abort()
            raise StreamError(f"stream frame {frame.seq}: a file began before the last one ended")
        self._header = dict(frame.params)
        self._header["path_bytes"] = path_from_fields(frame.params)
        self._sink = self._open_sink(self._header)
        self._hash = hashlib.sha256()
        self._size = 0

    def _write(self, frame: Frame) -> None:
        if self._sink is None:
            raise StreamError(f"stream frame {frame.seq}: data outside a file")
        data = frame.data()
        self._hash.update(data)
        self._size += len(data)
        self._sink.write(data)

    def _end(self, frame: Frame) -> None:
        if self._sink is None or self._header is None:
            raise StreamError(f"stream frame {frame.seq}: file_end outside a file")
        sink, header = self._sink, self._header
        self._sink, self._header = None, None
        if (
            frame.params.get("size") != self._size
            or frame.params.get("sha256") != self._hash.hexdigest()
        ):
            sink.discard()
            raise StreamError(
                f"file {header.get('path')!r}: received {self._size} bytes with SHA-256 "
                f"{self._hash.hexdigest()}, expected {frame.params.get('size')} bytes with "
                f"{frame.params.get('sha256')}"
            )
        sink.commit()
        self.completed.append(header)

    def abort(self) -> None:
        """Discard the file in progress, if any (call it when the stream ends in an error)."""
        if self._sink is not None:
            self._sink.discard()
            self._sink, self._header = None, None
