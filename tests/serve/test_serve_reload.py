"""SIGHUP applies the `[[watch]]` settings (exclude, retention, pre_backup) to the next backup."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.serve.conftest import wait_for, write_config


def reloaded(daemon) -> int:
    return sum(e["event"] == "configuration_reloaded" for e in daemon.events())


def test_sighup_applies_exclude_retention_and_pre_backup(make_daemon, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "orders.csv").write_text("id\n1\n")
    daemon = make_daemon()
    daemon.start()
    for line in ("2", "3"):
        (data / "orders.csv").write_text(f"id\n1\n{line}\n")
        assert daemon.raidctl("sync").returncode == 0
    assert daemon.call("forget", {"dry_run": True})["roots"] == {}

    marker = tmp_path / "pre-backup-ran"
    write_config(
        daemon,
        watch=f'path = "{data}"\nexclude = ["*.tmp", "cache/**"]\n'
        f'pre_backup = "touch {marker}"\n\n[watch.retention]\nkeep_last = 1',
    )
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: reloaded(daemon) == 1, what="configuration reloaded")

    (data / "x.tmp").write_text("scratch\n")
    (data / "cache").mkdir()
    (data / "cache" / "c.txt").write_text("cached\n")
    (data / "orders.csv").write_text("id\n1\n2\n3\n4\n")
    synced = daemon.raidctl("sync")
    assert synced.returncode == 0, synced.stderr
    listed = daemon.call("ls", {"root": "data"})
    paths = {entry["path"] for entry in listed["entries"]}
    assert "orders.csv" in paths
    assert not {"x.tmp", "cache/c.txt"} & paths
    assert marker.exists()

    plan = daemon.call("forget", {"dry_run": True})["roots"]["data"]
    assert [int(k) for k in plan["keep"]] == [listed["commit"]]
    assert len(plan["forget"]) >= 2
    assert daemon.stop() == 0
