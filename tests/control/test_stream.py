"""Streamed files: frames on the socket, holes, reassembly and checksum checks."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from raidd.control import ControlClient, EntryReader, FileLostError, Frame, StreamError
from raidd.control.stream import (
    FRAME_BYTES,
    bytes_fields,
    bytes_from_fields,
    path_fields,
    path_from_fields,
    xattr_fields,
    xattrs_from_fields,
)
from tests.control.conftest import ServerFactory


def pattern(size: int) -> bytes:
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def read_all(frames: list[Frame]) -> list[tuple[Frame, bytes | None]]:
    """Read every entry of a stream, files assembled with their holes as zeros."""
    entries = []
    for item in EntryReader(frames):
        if item.content is None:
            entries.append((item.frame, None))
            continue
        content = bytearray(item.content.size)
        for offset, piece in item.content:
            content[offset : offset + len(piece)] = piece
        entries.append((item.frame, bytes(content)))
    return entries


@pytest.mark.parametrize("size", [0, 1, FRAME_BYTES, FRAME_BYTES + 1, 1_000_003])
def test_file_streamed_whole(make_server: ServerFactory, size: int) -> None:
    server = make_server()
    with ControlClient(server.path) as client:
        reply = client.stream("blob", {"size": size})
        frames = list(reply)
    assert reply.result == {"files": 1, "bytes": size}
    [(header, content)] = read_all(frames)
    assert content == pattern(size)
    assert header.params["path"] == "dir/blob.bin"
    assert header.params["mode"] == 0o640
    data_frames = [frame for frame in frames if frame.kind == "data"]
    assert len(data_frames) == -(-size // FRAME_BYTES)
    assert all(len(frame.data()) <= FRAME_BYTES for frame in data_frames)
    assert frames[-1].kind == "file_end"
    assert frames[-1].params["sha256"] == hashlib.sha256(pattern(size)).hexdigest()


def test_holes_sent_as_hole_frames(make_server: ServerFactory) -> None:
    server = make_server()
    with ControlClient(server.path) as client:
        frames = list(client.stream("sparse"))
    holes = [frame.params["length"] for frame in frames if frame.kind == "hole"]
    assert holes == [(1 << 20) - 1000, (3 << 20) - (1 << 20) - 70_000]
    sent = sum(len(frame.data()) for frame in frames if frame.kind == "data")
    assert sent == 71_000
    (_, content), (after, _) = read_all(frames)
    expected = bytearray(3 << 20)
    expected[:1000] = b"a" * 1000
    expected[1 << 20 : (1 << 20) + 70_000] = b"b" * 70_000
    assert content == bytes(expected)
    assert frames[-2].params["sha256"] == hashlib.sha256(expected).hexdigest()
    assert after.kind == "dir"


def test_lost_file_ends_with_file_lost(make_server: ServerFactory) -> None:
    server = make_server()
    with ControlClient(server.path) as client:
        frames = list(client.stream("sparse", {"lose": True}))
    items = iter(EntryReader(frames))
    first = next(items)
    assert first.content is not None
    with pytest.raises(FileLostError, match="lost beyond the fault tolerance"):
        list(first.content)
    assert next(items).kind == "dir"


def frame(seq: int, kind: str, **params: Any) -> Frame:
    return Frame(1, seq, kind, {"request": 1, "seq": seq, "kind": kind, **params})


def data_frame(seq: int, content: bytes) -> Frame:
    return frame(seq, "data", data=base64.b64encode(content).decode())


def test_reader_rejects_bad_checksum() -> None:
    frames = [
        frame(0, "file", path="a", size=5),
        data_frame(1, b"hello"),
        frame(2, "file_end", size=5, sha256="0" * 64),
    ]
    with pytest.raises(StreamError, match="received 5 bytes"):
        read_all(frames)


def test_reader_rejects_missing_frame() -> None:
    frames = [frame(0, "file", path="a", size=1), data_frame(2, b"x")]
    with pytest.raises(StreamError, match="stream frame 1 missing"):
        read_all(frames)


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([frame(0, "data", data="aGk=")], "data outside a file"),
        ([frame(0, "file_end", size=0, sha256="")], "file_end outside a file"),
        ([frame(0, "hole", length=4)], "hole outside a file"),
        ([frame(0, "file", path="a", size=1), frame(1, "dir", path="b")], "dir inside file"),
        ([frame(0, "file", path="a", size=2), frame(1, "data", data="!!")], "invalid base64"),
        ([frame(0, "file", path="a", size=1), frame(1, "data")], "has no data"),
        ([frame(0, "file", path="a", size=1), data_frame(1, b"xy")], "runs past its size"),
        ([frame(0, "file", path="a", size=9), frame(1, "hole", length=10)], "runs past"),
        ([frame(0, "file", path="a", size=-1)], "invalid size"),
        ([frame(0, "file", path="a", size=1)], "stream ended inside file"),
        ([frame(0, "file", size=0)], "has no path"),
    ],
)
def test_reader_rejects_malformed(frames: list[Frame], message: str) -> None:
    with pytest.raises(StreamError, match=message):
        read_all(frames)


def test_unread_content_checked_before_next_entry() -> None:
    frames = [
        frame(0, "file", path="a", size=2),
        data_frame(1, b"hi"),
        frame(2, "file_end", size=2, sha256="0" * 64),
        frame(3, "dir", path="b"),
    ]
    items = iter(EntryReader(frames))
    next(items)
    with pytest.raises(StreamError, match="expected 2 bytes"):
        next(items)


def test_oversized_data_frame_rejected() -> None:
    with pytest.raises(StreamError, match="over"):
        data_frame(0, b"x" * (FRAME_BYTES + 1)).data()


def test_other_frames_passed_on() -> None:
    others: list[Frame] = []
    assert list(EntryReader([frame(0, "progress", done=0.5)], on_other=others.append)) == []
    assert [item.kind for item in others] == ["progress"]


def test_non_utf8_path_round_trip() -> None:
    path = b"caf\xe9/\xff.csv"
    fields = path_fields(path)
    assert "path_b64" in fields
    assert path_from_fields(fields) == path
    assert path_fields(b"plain/\xc3\xa4.csv") == {"path": "plain/ä.csv"}
    assert path_from_fields({"path": "plain/ä.csv"}) == b"plain/\xc3\xa4.csv"
    assert bytes_from_fields(bytes_fields("target", b"../\xff\n"), "target") == b"../\xff\n"


def test_xattrs_round_trip() -> None:
    xattrs = ((b"user.comment", b"\x00\xffvalue"), (b"user.\xff", b""))
    fields = xattr_fields(xattrs)
    assert fields[0] == {"name": "user.comment", "value": "AP92YWx1ZQ=="}
    assert xattrs_from_fields(fields) == xattrs
    with pytest.raises(StreamError, match="invalid xattrs"):
        xattrs_from_fields({"name": "x"})


def test_frame_from_params_validates() -> None:
    with pytest.raises(StreamError, match="invalid stream frame"):
        Frame.from_params({"seq": "1", "kind": "data"})
    with pytest.raises(StreamError, match="invalid stream frame"):
        Frame.from_params({"seq": True, "kind": "data"})
