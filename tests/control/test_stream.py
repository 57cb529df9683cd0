"""Streamed files: frames on the socket, reassembly and checksum checks."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from raidd.control import ControlClient, FileStreamDecoder, Frame, MemorySink, StreamError
from raidd.control.stream import FRAME_BYTES, path_fields, path_from_fields
from tests.control.conftest import ServerFactory


def pattern(size: int) -> bytes:
    return (bytes(range(256)) * (size // 256 + 1))[:size]


@pytest.mark.parametrize("size", [0, 1, FRAME_BYTES, FRAME_BYTES + 1, 1_000_003])
def test_file_streamed_whole(make_server: ServerFactory, size: int) -> None:
    server = make_server()
    sinks: list[MemorySink] = []

    def open_sink(header: dict[str, Any]) -> MemorySink:
        sinks.append(MemorySink(header))
        return sinks[-1]

    frames: list[Frame] = []
    decoder = FileStreamDecoder(open_sink)

    def on_frame(frame: Frame) -> None:
        frames.append(frame)
        decoder.feed(frame)

    with ControlClient(server.path) as client:
        result = client.call("blob", {"size": size}, on_frame=on_frame)
    assert result == {"files": 1, "bytes": size}
    [sink] = sinks
    assert sink.committed
    assert bytes(sink.content) == pattern(size)
    assert sink.header["path"] == "dir/blob.bin"
    assert sink.header["mode"] == 0o640
    assert decoder.completed == [sink.header]
    data_frames = [frame for frame in frames if frame.kind == "data"]
    assert len(data_frames) == -(-size // FRAME_BYTES)
    assert all(len(frame.data()) <= FRAME_BYTES for frame in data_frames)
    assert frames[-1].kind == "file_end"
    assert frames[-1].params["sha256"] == hashlib.sha256(pattern(size)).hexdigest()


def frame(seq: int, kind: str, **params: Any) -> Frame:
    return Frame(1, seq, kind, {"request": 1, "seq": seq, "kind": kind, **params})


def data_frame(seq: int, content: bytes) -> Frame:
    return frame(seq, "data", data=base64.b64encode(content).decode())


def test_decoder_rejects_bad_checksum() -> None:
    sinks: list[MemorySink] = []
    decoder = FileStreamDecoder(lambda header: sinks.append(MemorySink(header)) or sinks[-1])
    decoder.feed(frame(0, "file", path="a"))
    decoder.feed(data_frame(1, b"hello"))
    with pytest.raises(StreamError, match="received 5 bytes"):
        decoder.feed(frame(2, "file_end", size=5, sha256="0" * 64))
    assert not sinks[0].committed
    assert sinks[0].content == b""
    assert decoder.completed == []


def test_decoder_rejects_missing_frame() -> None:
    sinks: list[MemorySink] = []
    decoder = FileStreamDecoder(lambda header: sinks.append(MemorySink(header)) or sinks[-1])
    decoder.feed(frame(0, "file", path="a"))
    with pytest.raises(StreamError, match="stream frame 1 missing"):
        decoder.feed(data_frame(2, b"x"))
    assert not sinks[0].committed


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([frame(0, "data", data="aGk=")], "data outside a file"),
        ([frame(0, "file_end", size=0, sha256="")], "file_end outside a file"),
        ([frame(0, "file", path="a"), frame(1, "file", path="b")], "began before"),
        ([frame(0, "file", path="a"), frame(1, "data", data="!!")], "invalid base64"),
        ([frame(0, "file", path="a"), frame(1, "data")], "has no data"),
        ([frame(0, "file")], "has no path"),
    ],
)
def test_decoder_rejects_malformed(frames: list[Frame], message: str) -> None:
    decoder = FileStreamDecoder(MemorySink)
    with pytest.raises(StreamError, match=message):
        for item in frames:
            decoder.feed(item)


def test_oversized_data_frame_rejected() -> None:
    with pytest.raises(StreamError, match="over"):
        data_frame(0, b"x" * (FRAME_BYTES + 1)).data()


def test_other_frames_passed_on() -> None:
    others: list[Frame] = []
    decoder = FileStreamDecoder(MemorySink, on_other=others.append)
    decoder.feed(frame(0, "progress", done=0.5))
    assert [item.kind for item in others] == ["progress"]


def test_non_utf8_path_round_trip() -> None:
    path = b"caf\xe9/\xff.csv"
    fields = path_fields(path)
    assert "path_b64" in fields
    assert path_from_fields(fields) == path
    assert path_fields(b"plain/\xc3\xa4.csv") == {"path": "plain/ä.csv"}
    assert path_from_fields({"path": "plain/ä.csv"}) == b"plain/\xc3\xa4.csv"


def test_frame_from_params_validates() -> None:
    with pytest.raises(StreamError, match="invalid stream frame"):
        Frame.from_params({"seq": "1", "kind": "data"})
    with pytest.raises(StreamError, match="invalid stream frame"):
        Frame.from_params({"seq": True, "kind": "data"})
