"""Fixtures for the offline command tests: a lock directory and a CLI runner."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog

from raidd.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "lock"
    monkeypatch.setenv("RAIDD_LOCK_DIR", str(path))
    return path


@pytest.fixture(autouse=True)
def restore_structlog() -> Iterator[None]:
    """Put back the logging configuration that raidd.cli.main replaces."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def raidd(capsys: pytest.CaptureFixture[str], lock_dir: Path) -> Callable[..., Result]:
    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


LOSETUP = shutil.which("losetup")
needs_loop = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/loop-control") or LOSETUP is None,
    reason="loop devices need root, /dev/loop-control and losetup",
)


@pytest.fixture
def loop() -> Iterator[Callable[..., str]]:
    """Attach image files with `losetup -f --show`; detach every one at the end."""
    attached: list[str] = []

    def attach(image: Path, read_only: bool = False) -> str:
        assert LOSETUP is not None
        command = [LOSETUP, "-f", "--show", *(["-r"] if read_only else []), str(image)]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        device = result.stdout.strip()
        attached.append(device)
        return device

    yield attach
    assert LOSETUP is not None
    for device in attached:
        subprocess.run([LOSETUP, "-d", device], capture_output=True, check=False)


@contextmanager
def mounted_tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of `size` at `mount_point` (skip when that is impossible)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
        capture_output=True,
    )
    if done.returncode != 0:
        pytest.skip("mount -t tmpfs failed")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 300 KiB tmpfs, so that writes of a few superblock copies run out of space."""
    with mounted_tmpfs(tmp_path / "small", "300k") as mount_point:
        yield mount_point


@pytest.fixture
def medium_fs(tmp_path: Path) -> Iterator[Path]:
    """A 20 MiB tmpfs: room for one 16 MiB image, not for two written in full."""
    with mounted_tmpfs(tmp_path / "medium", "20m") as mount_point:
        yield mount_point
