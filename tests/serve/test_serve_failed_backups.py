"""Failed backups show: a watched root gone or missing, a failing pre_backup, a full array."""

from __future__ import annotations

import json
from pathlib import Path

from tests.serve.conftest import Daemon, wait_for


def _hook(tmp_path: Path) -> tuple[str, Path]:
    """Return an `[events]` table whose program appends each event record to a file."""
    records = tmp_path / "events.jsonl"
    hook = tmp_path / "hook.sh"
    hook.write_text(f'#!/bin/sh\ncat >> "{records}"\necho >> "{records}"\n')
    hook.chmod(0o755)
    return f'program = ["{hook}"]', records


def _events(records: Path, name: str) -> list[dict]:
    if not records.exists():
        return []
    lines = [line for line in records.read_text().splitlines() if line.strip()]
    return [record for record in map(json.loads, lines) if record["event"] == name]


def test_root_moved_away_fails_sync_and_status(make_daemon, tmp_path: Path) -> None:
    """A root moved away: sync fails naming it, status --test exits 1, the hook hears it once."""
    events, records = _hook(tmp_path)
    data, other = tmp_path / "data", tmp_path / "other"
    data.mkdir()
    other.mkdir()
    (data / "a.txt").write_text("a\n")
    (other / "b.txt").write_text("b\n")
    daemon: Daemon = make_daemon(
        events=events, watch=f'path = "{data}"\n\n[[watch]]\npath = "{other}"'
    )
    daemon.start()
    assert daemon.raidctl("status", "--test").returncode == 0
    data.rename(tmp_path / "data.away")

    both = daemon.raidctl("sync")
    assert both.returncode == 1, both
    assert f"root data ({data}): cannot open the root" in both.stderr
    assert "other" not in both.stderr
    alone = daemon.raidctl("sync", "data")
    assert alone.returncode == 2, alone
    assert f"root data ({data})" in alone.stderr
    assert "nothing was committed" in alone.stderr

    backups = daemon.call("status")["backups"]
    assert backups["behind"] is True
    assert f"root data ({data}): cannot open the root" in backups["last_error"]
    assert list(backups["failed_roots"]) == ["data"]
    test = daemon.raidctl("status", "--test")
    assert test.returncode == 1
    assert "BACKUP FAILED" in test.stdout
    wait_for(lambda: _events(records, "backups_behind"), what="the backups_behind event")

    (tmp_path / "data.away").rename(data)
    back = daemon.raidctl("sync")
    assert back.returncode == 0, back
    assert daemon.raidctl("status", "--test").returncode == 0
    assert daemon.call("status")["backups"]["last_error"] is None
    assert len(_events(records, "backups_behind")) == 1
    assert daemon.stop() == 0


def test_failing_pre_backup_and_missing_root(make_daemon, tmp_path: Path) -> None:
    """A failing pre_backup fails its root; a root missing at start is NOT WATCHING and behind."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a\n")
    daemon: Daemon = make_daemon(
        watch=f'path = "{data}"\npre_backup = "exit 3"\n\n[[watch]]\npath = "{tmp_path / "nodir"}"'
    )
    daemon.start()
    status = daemon.raidctl("status", "--test")
    assert status.returncode == 1, status
    assert "NOT WATCHING" in status.stdout
    failed = daemon.call("status")["backups"]["failed_roots"]
    assert "pre_backup failed: exit status 3" in failed["data"]
    assert "cannot open the root" in failed["nodir"]
    sync = daemon.raidctl("sync", "data")
    assert sync.returncode == 2
    assert "pre_backup failed" in sync.stderr
    assert daemon.call("snapshots") == []
    assert daemon.stop() == 0
