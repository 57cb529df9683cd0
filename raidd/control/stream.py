"""Streamed replies: notification frames that come before a request's final response.

A method with a long reply (restore, a followed job) sends any number of
frames, each a JSON-RPC notification of method `stream`:

    {"jsonrpc": "2.0", "method": "stream",
     "params": {"request": 4, "seq": 0, "kind": "file", ...}}

`request` is the id of the request the frame belongs to and `seq` counts
its frames from 0, so a client can tell that none is lost. The response
with the same id ends the stream.

A restore sends one frame per directory (`dir`), symbolic link
(`symlink`) and extra name of a hard-linked file (`hardlink`), and each
regular file as a `file` frame (its header), its content as `data` and
`hole` frames in file order, and one `file_end` frame with its size and
SHA-256, or a `file_lost` frame when its content cannot be recovered.
`data` frames carry at most `FRAME_BYTES` bytes, base64-encoded, so no
line grows past about 64 KiB; a `hole` frame carries only a length, so a
sparse file's holes cost nothing to send. The SHA-256 covers the content
with its holes read as zeros, as `sha256sum` of the restored file does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from raidd.errors import IntegrityError, RequestError

STREAM_METHOD = "stream"
FRAME_BYTES = 48 * 1024
# Frame kinds that stand for a whole entry of a restore.
ENTRY_KINDS = frozenset({"file", "dir", "symlink", "hardlink"})
# Frame kinds that belong to the file a `file` frame began.
CONTENT_KINDS = frozenset({"data", "hole", "file_end", "file_lost"})
_ZEROS = bytes(1 << 20)


class StreamError(RequestError):
    """A stream whose frames are out of order, malformed or fail their checksum."""


class FileLostError(IntegrityError):
    """A streamed file whose content the daemon could not recover (a `file_lost` frame).

    Attributes:
        path: the file's path in the stream.
        reason: the daemon's `error` text.
    """

    def __init__(self, path: bytes, reason: str) -> None:
        super().__init__(f"file {_show(path)} is lost: {reason}")
        self.path = path
        self.reason = reason


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

    def integer(self, key: str) -> int:
        """Return the non-negative integer member `key`.

        Raises:
            StreamError: the member is missing, not an integer or negative.
        """
        value = self.params.get(key)
        if type(value) is not int or value < 0:
            raise StreamError(f"stream frame {self.seq} ({self.kind}): invalid {key} {value!r}")
        return value


def encode_data(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def bytes_fields(key: str, value: bytes) -> dict[str, str]:
    """Return bytes as JSON: `key` when they are UTF-8, plus `key_b64` of the bytes when not."""
    try:
        return {key: value.decode("utf-8")}
    except UnicodeDecodeError:
        return {
            key: value.decode("utf-8", "replace"),
            f"{key}_b64": base64.b64encode(value).decode("ascii"),
        }


def bytes_from_fields(params: dict[str, Any], key: str) -> bytes:
    """Return the bytes that `bytes_fields(key, ...)` encoded.

    Raises:
        StreamError: neither `key` nor `key_b64` contains a valid value.
    """
    encoded = params.get(f"{key}_b64")
    if encoded is not None:
        try:
            return base64.b64decode(str(encoded), validate=True)
        except (binascii.Error, ValueError) as error:
            raise StreamError(f"invalid {key}_b64: {error}") from None
    text = params.get(key)
    if not isinstance(text, str):
        raise StreamError(f"stream frame has no {key}: {params!r}")
    return text.encode("utf-8")


def _show(path: bytes) -> str:
    # Quoted text with newlines and invalid UTF-8 escaped, never a bytes repr.
    return repr(os.fsdecode(path))


def path_fields(path: bytes) -> dict[str, str]:
    """Return a path as JSON: `path` when it is UTF-8, plus `path_b64` of its bytes when not."""
    return bytes_fields("path", path)


def path_from_fields(params: dict[str, Any]) -> bytes:
    """Return a path's bytes from the fields `path_fields()` made.

    Raises:
        StreamError: neither field contains a valid path.
    """
    return bytes_from_fields(params, "path")


def xattr_fields(xattrs: Iterable[tuple[bytes, bytes]]) -> list[dict[str, str]]:
    """Return extended attributes as JSON: `name` (or `name_b64`) and `value` in base64."""
    return [{**bytes_fields("name", name), "value": encode_data(value)} for name, value in xattrs]


def xattrs_from_fields(items: object) -> tuple[tuple[bytes, bytes], ...]:
    """Return the (name, value) pairs that `xattr_fields()` encoded.

    Raises:
        StreamError: the list or one of its items is malformed.
    """
    if items is None:
        return ()
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise StreamError(f"invalid xattrs {items!r}: expected a list of objects")
    pairs = []
    for item in items:
        value = item.get("value")
        if not isinstance(value, str):
            raise StreamError(f"xattr {item!r} has no value")
        try:
            pairs.append((bytes_from_fields(item, "name"), base64.b64decode(value, validate=True)))
        except (binascii.Error, ValueError) as error:
            raise StreamError(f"xattr {item.get('name')!r}: invalid base64: {error}") from None
    return tuple(pairs)


def hash_zeros(digest: Any, length: int) -> None:
    """Feed `length` zero bytes to a hashlib digest, as a hole reads."""
    view = memoryview(_ZEROS)
    while length > 0:
        piece = min(length, len(_ZEROS))
        digest.update(view[:piece])
        length -= piece


@dataclass(frozen=True)
class ReceivedEntry:
    """One entry of a restore stream: its frame and, for a `file`, its content."""

    frame: Frame
    content: FileContent | None = None

    @property
    def kind(self) -> str:
        return self.frame.kind


class EntryReader:
    """Turn a restore's frames into entries, checking order, sizes and SHA-256.

    Iterate it for `ReceivedEntry` items. A file's `content` must be read
    before the next entry is taken, or it is read (and checked) then. Frames
    of kinds that are neither entries nor content go to `on_other` when
    given and are otherwise ignored.
    """

    def __init__(self, frames: Iterable[Frame], on_other: Any = None) -> None:
        self._frames = iter(frames)
        self._on_other = on_other
        self._expected_seq = 0
        self._file: FileContent | None = None

    def next_frame(self) -> Frame | None:
        """Return the next frame, or None at the end of the stream.

        Raises:
            StreamError: a frame is missing.
        """
        frame = next(self._frames, None)
        if frame is None:
            return None
        if frame.seq != self._expected_seq:
            raise StreamError(f"stream frame {self._expected_seq} missing (got {frame.seq})")
        self._expected_seq += 1
        return frame

    def __iter__(self) -> Iterator[ReceivedEntry]:
        while True:
            if self._file is not None:
                self._file.drain()
                self._file = None
            frame = self.next_frame()
            if frame is None:
                return
            if frame.kind == "file":
                self._file = FileContent(self, frame)
                yield ReceivedEntry(frame, self._file)
            elif frame.kind in ENTRY_KINDS:
                yield ReceivedEntry(frame)
            elif frame.kind in CONTENT_KINDS:
                raise StreamError(f"stream frame {frame.seq}: {frame.kind} outside a file")
            elif self._on_other is not None:
                self._on_other(frame)


class FileContent:
    """The content of one streamed file, as (offset, bytes) pieces in file order.

    Holes are the gaps between pieces and after the last one. Iteration
    ends at the `file_end` frame once its size and SHA-256 match what
    arrived.

    Raises (while iterating):
        StreamError: a frame is missing or out of place, the content runs
            past the header's size, or size or SHA-256 differ at `file_end`.
        FileLostError: the daemon sent `file_lost` instead of `file_end`.
    """

    def __init__(self, reader: EntryReader, header: Frame) -> None:
        self._reader = reader
        self.header = header
        self.path = path_from_fields(header.params)
        self.size = header.integer("size")
        self.position = 0
        self.received = 0
        self.finished = False
        self._hash = hashlib.sha256()

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        return self

    def __next__(self) -> tuple[int, bytes]:
        while not self.finished:
            frame = self._reader.next_frame()
            if frame is None:
                self.finished = True
                raise StreamError(f"stream ended inside file {_show(self.path)}")
            if frame.kind == "data":
                return self._take_data(frame)
            if frame.kind == "hole":
                length = frame.integer("length")
                self._advance(frame, length)
                hash_zeros(self._hash, length)
            elif frame.kind == "file_end":
                self.finished = True
                self._check_end(frame)
            elif frame.kind == "file_lost":
                self.finished = True
                raise FileLostError(self.path, str(frame.params.get("error")))
            else:
                self.finished = True
                raise StreamError(
                    f"stream frame {frame.seq}: {frame.kind} inside file {_show(self.path)}"
                )
        raise StopIteration

    def _take_data(self, frame: Frame) -> tuple[int, bytes]:
        content = frame.data()
        offset = self.position
        self._advance(frame, len(content))
        self._hash.update(content)
        self.received += len(content)
        return offset, content

    def _advance(self, frame: Frame, length: int) -> None:
        self.position += length
        if self.position > self.size:
            self.finished = True
            raise StreamError(
                f"stream frame {frame.seq}: file {_show(self.path)} runs past its size {self.size}"
            )

    def _check_end(self, frame: Frame) -> None:
        size, digest = frame.params.get("size"), frame.params.get("sha256")
        if size != self.position or size != self.size or digest != self._hash.hexdigest():
            raise StreamError(
                f"file {_show(self.path)}: received {self.position} bytes with SHA-256 "
                f"{self._hash.hexdigest()}, expected {size} bytes with {digest}"
            )

    def drain(self) -> None:
        """Read and check the rest of the content without keeping it."""
        for _ in self:
            pass
