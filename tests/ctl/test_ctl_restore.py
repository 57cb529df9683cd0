"""raidctl's restore client on hand-made frames: lost files, replays, hard links."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from raidd.control.stream import EntryReader, Frame, StreamError, hash_zeros
from raidd.ctl.restore import Received, entry_from_frame, write_entry
from raidd.store.restore_writer import RestoreWriter

MiB = 1024 * 1024
MTIME_NS = 1_700_000_000_000_000_000


def file_frames(path: str, pieces: list[tuple[int, bytes]], size: int) -> list[dict[str, Any]]:
    """Return the frames of one file: header, data and holes, file_end."""
    frames: list[dict[str, Any]] = [
        {"kind": "file", "path": path, "size": size, "mode": 0o640, "mtime_ns": MTIME_NS}
        | {"uid": 0, "gid": 0, "xattrs": []}
    ]
    digest = hashlib.sha256()
    position = 0
    for offset, data in pieces:
        if offset > position:
            frames.append({"kind": "hole", "length": offset - position})
            hash_zeros(digest, offset - position)
        frames.append({"kind": "data", "data": base64.b64encode(data).decode()})
        digest.update(data)
        position = offset + len(data)
    if size > position:
        frames.append({"kind": "hole", "length": size - position})
        hash_zeros(digest, size - position)
    frames.append({"kind": "file_end", "size": size, "sha256": digest.hexdigest()})
    return frames


def numbered(frames: list[dict[str, Any]]) -> list[Frame]:
    return [
        Frame.from_params({"request": 1, "seq": seq, **params})
        for seq, params in enumerate(frames)
    ]


def restore(target: Path, frames: list[dict[str, Any]], **options: Any) -> tuple[Any, Received]:
    received = Received()
    with RestoreWriter(target, **options) as writer:
        for item in EntryReader(numbered(frames)):
            write_entry(writer, item, received)
        return writer.finish(), received


def test_lost_file_leaves_nothing(tmp_path: Path) -> None:
    frames = file_frames("crm/lost.bin", [(0, b"x" * 1000)], 1000)
    frames[-1] = {"kind": "file_lost", "error": "chunk 0123 lost beyond the fault tolerance"}
    frames += file_frames("crm/kept.txt", [(0, b"kept\n")], 5)
    report, received = restore(tmp_path, frames)
    assert [path for path, _ in received.lost] == [b"crm/lost.bin"]
    assert received.lost[0][1] == "chunk 0123 lost beyond the fault tolerance"
    assert sorted(os.listdir(tmp_path / "crm")) == ["kept.txt"]
    assert report.written == [b"crm/kept.txt"]


def test_overwrite_after_mismatch_replays_content(tmp_path: Path) -> None:
    """A file that matches in size, mode and mtime but differs late is rewritten whole."""
    pieces = [(2 * MiB, os.urandom(40_000)), (2 * MiB + 40_000, os.urandom(40_000))]
    frames = file_frames("crm/disk.img", pieces, 4 * MiB)
    restore(tmp_path, frames)
    path = tmp_path / "crm" / "disk.img"
    expected = path.read_bytes()
    changed = bytearray(expected)
    changed[2 * MiB + 60_000] ^= 1
    path.write_bytes(changed)
    os.utime(path, ns=(MTIME_NS, MTIME_NS))
    report, _ = restore(tmp_path, frames)
    assert [path for path, _ in report.conflicts] == [b"crm/disk.img"]
    report, _ = restore(tmp_path, frames, overwrite=True)
    assert report.written == [b"crm/disk.img"]
    assert path.read_bytes() == expected
    assert path.stat().st_blocks * 512 <= MiB


def test_hard_link_to_restored_file(tmp_path: Path) -> None:
    frames = file_frames("crm/a", [(0, b"same\n")], 5)
    frames.append({"kind": "hardlink", "path": "crm/b", "link_to": "crm/a"})
    frames.append({"kind": "hardlink", "path": "crm/c", "link_to": "crm/missing"})
    report, received = restore(tmp_path, frames)
    assert (tmp_path / "crm" / "a").stat().st_ino == (tmp_path / "crm" / "b").stat().st_ino
    assert report.errors == [(b"crm/c", "its hard-link source 'crm/missing' was not restored")]
    assert received.kinds["hardlink"] == 2
    again, _ = restore(tmp_path, frames[:-1])
    assert again.unchanged == [b"crm/a", b"crm/b"]


def test_bad_checksum_aborts_and_removes_temporary(tmp_path: Path) -> None:
    frames = file_frames("crm/a", [(0, b"hello")], 5)
    frames[-1]["sha256"] = "0" * 64
    with pytest.raises(StreamError, match="expected 5 bytes"):
        restore(tmp_path, frames)
    assert os.listdir(tmp_path / "crm") == []


def test_set_id_bits_kept_only_for_root() -> None:
    frame = numbered(file_frames("crm/tool", [], 0))[0]
    frame.params["mode"] = 0o4755
    assert entry_from_frame(frame, keep_set_id=True).mode == 0o4755
    assert entry_from_frame(frame, keep_set_id=False).mode == 0o755
    frame.params["uid"] = -1
    with pytest.raises(StreamError, match="invalid uid"):
        entry_from_frame(frame, keep_set_id=True)
