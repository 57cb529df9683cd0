"""Streamed files written under a destination root by the client."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from raidd.control import ControlClient, FileStreamDecoder
from raidd.control.files import TemporaryFileSink, directory_sinks, resolve_destination
from raidd.control.stream import StreamError
from tests.control.conftest import ServerFactory, require_root, run_as


def test_blob_restored_to_directory(make_server: ServerFactory, tmp_path: Path) -> None:
    server = make_server()
    decoder = FileStreamDecoder(directory_sinks(tmp_path))
    with ControlClient(server.path) as client:
        client.call("blob", {"size": 200_000}, on_frame=decoder.feed)
    restored = tmp_path / "dir" / "blob.bin"
    content = restored.read_bytes()
    assert content == (bytes(range(256)) * 800)[:200_000]
    assert restored.stat().st_mode & 0o777 == 0o640
    assert sorted(path.name for path in (tmp_path / "dir").iterdir()) == ["blob.bin"]


@pytest.mark.parametrize(
    "relative",
    [b"", b"/etc/passwd", b"../escape", b"a/../../b", b"a//b", b"./a", b"a/\0b", b"a/"],
)
def test_unsafe_paths_rejected(tmp_path: Path, relative: bytes) -> None:
    with pytest.raises(StreamError, match="invalid restore path"):
        resolve_destination(tmp_path, relative)


def test_symlinked_directory_rejected(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(StreamError, match="symbolic links are not followed"):
        resolve_destination(root, b"link/file")


def test_non_utf8_name_kept(tmp_path: Path) -> None:
    destination = resolve_destination(tmp_path, b"caf\xe9/n\xffme.csv")
    assert os.fsencode(destination) == os.fsencode(tmp_path) + b"/caf\xe9/n\xffme.csv"


def test_commit_sets_mode_and_mtime(tmp_path: Path) -> None:
    destination = tmp_path / "sub" / "orders.csv"
    sink = TemporaryFileSink(destination, {"mode": 0o4755, "mtime_ns": 1_700_000_000_123_456_789})
    sink.write(b"id,total\n")
    assert not destination.exists()
    sink.commit()
    info = destination.stat()
    assert destination.read_bytes() == b"id,total\n"
    assert info.st_mode & 0o7777 == 0o755
    assert info.st_mtime_ns == 1_700_000_000_123_456_789


def test_discard_leaves_old_file(tmp_path: Path) -> None:
    destination = tmp_path / "orders.csv"
    destination.write_bytes(b"old")
    sink = TemporaryFileSink(destination, {})
    sink.write(b"partial")
    sink.discard()
    assert destination.read_bytes() == b"old"
    assert [path.name for path in tmp_path.iterdir()] == ["orders.csv"]


def test_caller_without_write_access_fails(socket_dir: Path) -> None:
    """A non-root caller cannot restore into a directory it cannot write."""
    require_root()
    target = socket_dir / "root-only"
    target.mkdir(mode=0o755)

    def try_write() -> str:
        try:
            TemporaryFileSink(target / "file", {})
        except PermissionError as error:
            return f"denied: {error.strerror}"
        return "written"

    assert run_as(65534, 65534, [], try_write) == "denied: Permission denied"
    assert list(target.iterdir()) == []
