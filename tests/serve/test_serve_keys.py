"""`raidctl key remove` of the slot the daemon's own key file opens."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_key_remove_own_slot_needs_force(make_daemon, tmp_path: Path) -> None:
    daemon = make_daemon()
    daemon.start()
    second = tmp_path / "second.key"
    added = daemon.raidctl("key", "add", "--new-keyfile", str(second))
    assert added.returncode == 0, added.stderr
    assert "added keyslot 1" in added.stdout
    unlocked = next(e for e in daemon.events() if e["event"] == "array_unlocked")
    assert unlocked["keyslots"] == [0]

    rejected = daemon.raidctl("key", "remove", "0")
    assert rejected.returncode == 2
    assert f"the daemon's key file {tmp_path / 'key'} opens" in rejected.stderr
    assert "pass --force" in rejected.stderr
    assert [s["slot"] for s in daemon.call("key.list")] == [0, 1]
    # The new key's slot is not the daemon's: it goes without --force.
    assert daemon.raidctl("key", "remove", "1").returncode == 0
    assert (
        daemon.raidctl("key", "add", "--new-keyfile", str(tmp_path / "third.key")).returncode == 0
    )
    forced = daemon.raidctl("key", "remove", "--force", "0")
    assert forced.returncode == 0, forced.stderr
    assert daemon.stop() == 0

    with pytest.raises(AssertionError) as failed:
        daemon.start()
    assert daemon.process is not None and daemon.process.returncode == 5
    (line,) = [x for x in str(failed.value).splitlines() if x.startswith("raidd serve: ")]
    assert line.count("no keyslot opens") == 1, line
    assert str(tmp_path / "key") in line
