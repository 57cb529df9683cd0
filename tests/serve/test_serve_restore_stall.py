"""A restore whose client stops reading holds up no commit."""

from __future__ import annotations

import json
import os
import select
import socket
from pathlib import Path

from tests.serve.conftest import Daemon, wait_for

MiB = 1024 * 1024


def _stalled_restore(daemon: Daemon) -> socket.socket:
    """Send a restore on a raw connection with a tiny receive buffer, and read nothing."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(str(daemon.socket))
    request = {"jsonrpc": "2.0", "id": 1, "method": "restore", "params": {"paths": ["data"]}}
    client.sendall(json.dumps(request).encode() + b"\n")
    return client


def _count(daemon: Daemon, name: str) -> int:
    return [event["event"] for event in daemon.events()].count(name)


def test_stalled_restore_lets_commits_through(make_daemon, tmp_path: Path) -> None:
    """Two clients stall their restores; a change is committed while both still stall."""
    data = tmp_path / "data"
    data.mkdir()
    # Far more than the socket buffers take: the daemon blocks on the send.
    (data / "large.bin").write_bytes(os.urandom(8 * MiB))
    daemon: Daemon = make_daemon()
    daemon.start()
    stalled = [_stalled_restore(daemon), _stalled_restore(daemon)]
    try:
        for client in stalled:
            # The first frames arrived: the restore listed its entries and is sending.
            readable, _, _ = select.select([client], [], [], 30)
            assert readable == [client]
        commits_before = _count(daemon, "backup_committed")
        (data / "note.txt").write_text("written while two restores stall\n")
        synced = daemon.raidctl("sync")
        assert synced.returncode == 0, synced
        assert "nothing changed" not in synced.stdout
        # The commit is durable while both clients still hold their restores.
        assert _count(daemon, "backup_committed") == commits_before + 1
        names = [event["event"] for event in daemon.events()]
        assert "restore_streamed" not in names
        assert "control_connection_lost" not in names
        listing = daemon.call("ls", {"root": "data"})
        assert "note.txt" in [entry["path"] for entry in listing["entries"]]
    finally:
        for client in stalled:
            client.close()
    wait_for(
        lambda: _count(daemon, "control_connection_lost") == 2,
        what="the daemon to drop both stalled connections",
    )
    assert daemon.stop() == 0
