"""A daemon whose array fills up: sync reports the error, space comes back, gc runs."""

from __future__ import annotations

import os
from pathlib import Path

from tests.serve.conftest import Daemon

MiB = 1024 * 1024


def test_full_array_sync_then_gc(make_daemon, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "small.txt").write_text("kept\n")
    (data / "old.bin").write_bytes(os.urandom(20 * MiB))
    daemon: Daemon = make_daemon(watch=f'path = "{data}"\n[watch.retention]\nkeep_last = 1')
    daemon.start()
    (data / "old.bin").unlink()
    assert daemon.raidctl("sync").returncode == 0
    free_before = daemon.call("status")["array"]["free_stripes"]

    (data / "big.bin").write_bytes(os.urandom(30 * MiB))
    full = daemon.raidctl("sync")
    assert full.returncode == 2, full
    assert "is full" in full.stderr
    assert "raidctl forget" in full.stderr
    assert "raidctl gc" in full.stderr
    status = daemon.call("status")
    assert status["array"]["free_stripes"] == free_before
    assert status["backups"]["behind"] is True
    assert "is full" in status["backups"]["failed_roots"]["data"]

    (data / "big.bin").unlink()
    assert daemon.raidctl("forget").returncode == 0
    collected = daemon.raidctl("gc")
    assert collected.returncode == 0, collected
    # Freed stripes become writable two commits later.
    (data / "note.txt").write_text("one\n")
    assert daemon.raidctl("sync").returncode == 0
    (data / "note.txt").write_text("two\n")
    assert daemon.raidctl("sync").returncode == 0
    assert daemon.call("status")["array"]["free_stripes"] > free_before
    assert daemon.raidctl("status", "--test").returncode == 0
    restored = daemon.raidctl("restore", "data", "--to", str(tmp_path / "out"))
    assert restored.returncode == 0, restored
    assert (tmp_path / "out" / "data" / "small.txt").read_text() == "kept\n"
    assert daemon.stop() == 0
