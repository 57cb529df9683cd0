"""Key files: whole-file raw reads, permission checks and creating new ones."""

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import crypto


def write_file(path: Path, content: bytes, mode: int) -> Path:
    path.write_bytes(content)
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("mode", [0o400, 0o600, 0o700])
def test_read_whole_file_raw(tmp_path: Path, mode: int) -> None:
    content = bytes(range(256)) + b"\r\n\n"  # not UTF-8, trailing newlines kept
    path = write_file(tmp_path / "key", content, mode)
    secret = crypto.read_keyfile(path)
    assert isinstance(secret, bytearray)
    assert secret == content


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o610, 0o601, 0o666])
def test_group_or_other_access_rejected(tmp_path: Path, mode: int) -> None:
    path = write_file(tmp_path / "key", os.urandom(32), mode)
    with pytest.raises(crypto.KeyFileError, match=f"key file {path} has mode {mode:04o}"):
        crypto.read_keyfile(path)


def test_permission_message_gives_fix(tmp_path: Path) -> None:
    path = write_file(tmp_path / "key", os.urandom(32), 0o644)
    with pytest.raises(crypto.KeyFileError, match=f"run chmod 600 {path}"):
        crypto.read_keyfile(path)


def test_symlink_target_is_checked(tmp_path: Path) -> None:
    target = write_file(tmp_path / "key", os.urandom(32), 0o644)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(crypto.KeyFileError, match="has mode 0644"):
        crypto.read_keyfile(link)


@pytest.mark.parametrize("size", [0, 1, 31])
def test_short_file_rejected(tmp_path: Path, size: int) -> None:
    path = write_file(tmp_path / "key", b"k" * size, 0o600)
    with pytest.raises(crypto.KeyFileError, match=f"is {size} bytes, but a key file must contain"):
        crypto.read_keyfile(path)


def test_exactly_32_bytes_accepted(tmp_path: Path) -> None:
    path = write_file(tmp_path / "key", b"k" * 32, 0o600)
    assert crypto.read_keyfile(path) == b"k" * 32


def test_huge_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "image"
    with path.open("wb") as file:
        file.truncate(8 * 1024 * 1024 + 1)
    os.chmod(path, 0o600)
    with pytest.raises(crypto.KeyFileError, match="more than the 8388608-byte maximum"):
        crypto.read_keyfile(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing"
    with pytest.raises(crypto.KeyFileError, match=f"cannot open key file {path}: No such file"):
        crypto.read_keyfile(path)


def test_directory_rejected(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    directory.mkdir(mode=0o700)
    with pytest.raises(crypto.KeyFileError, match="is not a regular file"):
        crypto.read_keyfile(directory)


def test_fifo_rejected_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(crypto.KeyFileError, match="is not a regular file"):
        crypto.read_keyfile(fifo)


def test_write_new_keyfile(tmp_path: Path) -> None:
    path = tmp_path / "new.key"
    crypto.write_new_keyfile(path)
    info = path.stat()
    assert stat.S_IMODE(info.st_mode) == 0o400
    assert info.st_size == 32
    secret = crypto.read_keyfile(path)
    assert len(secret) == 32
    other = tmp_path / "other.key"
    crypto.write_new_keyfile(other)
    assert crypto.read_keyfile(other) != secret


def test_new_keyfile_ignores_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        crypto.write_new_keyfile(tmp_path / "new.key")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "new.key").stat().st_mode) == 0o400


def test_new_keyfile_rejects_existing(tmp_path: Path) -> None:
    path = write_file(tmp_path / "key", b"old key content that must survive", 0o600)
    with pytest.raises(crypto.KeyFileError, match=f"key file {path} already exists"):
        crypto.write_new_keyfile(path)
    assert path.read_bytes() == b"old key content that must survive"


def test_new_keyfile_rejects_symlink(tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(crypto.KeyFileError, match="already exists"):
        crypto.write_new_keyfile(link)
    assert not (tmp_path / "elsewhere").exists()


def test_new_keyfile_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "new.key"
    with pytest.raises(crypto.KeyFileError, match=f"cannot create key file {path}"):
        crypto.write_new_keyfile(path)


@pytest.fixture
def full_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 4 KiB tmpfs mounted under tmp_path and filled to the last byte (needs root)."""
    mountpoint = tmp_path / "full"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        filler_path = mountpoint / "filler"
        with (
            filler_path.open("wb", buffering=0) as filler,
            pytest.raises(OSError, match="No space left on device"),
        ):
            while True:
                filler.write(bytes(4096))
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def test_new_keyfile_on_full_disk(full_filesystem: Path) -> None:
    """A write that fails for lack of space raises and leaves no partial key file."""
    path = full_filesystem / "new.key"
    with pytest.raises(crypto.KeyFileError, match=f"cannot write key file {path}: No space"):
        crypto.write_new_keyfile(path)
    assert not path.exists()


def test_new_keyfile_opens_keyslot(tmp_path: Path, master: crypto.MasterKey) -> None:
    path = tmp_path / "new.key"
    crypto.write_new_keyfile(path)
    area = crypto.KeyslotArea.create(master, keyfile_secret=crypto.read_keyfile(path))
    assert area.unlock_keyfile(crypto.read_keyfile(path)) == master
