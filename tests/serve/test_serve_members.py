"""Array jobs that wait for each other: every returning member resynced, every role rebuilt."""

from __future__ import annotations

import os
from pathlib import Path

from tests.serve.conftest import wait_for

MiB = 1024 * 1024


def finished_jobs(daemon, kind: str) -> list[dict]:
    jobs = daemon.call("jobs", {"finished": True})
    return [job for job in jobs if job["kind"] == kind and job["state"] == "done"]


def test_two_returning_members_resynced(make_daemon, tmp_path: Path) -> None:
    """RAID6 with two members away during commits takes both back when they return."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "before.txt").write_text("before\n")
    daemon = make_daemon(level=6, members=5)
    away = [tmp_path / "away-3", tmp_path / "away-4"]
    daemon.members[3].rename(away[0])
    daemon.members[4].rename(away[1])
    daemon.start()
    states = [member["state"] for member in daemon.call("status")["array"]["members"]]
    assert states == ["in_sync", "in_sync", "in_sync", "missing", "missing"]
    (tmp_path / "data" / "while-away.bin").write_bytes(os.urandom(200_000))
    assert daemon.raidctl("sync").returncode == 0
    assert daemon.stop() == 0

    away[0].rename(daemon.members[3])
    away[1].rename(daemon.members[4])
    daemon.start()
    wait_for(lambda: len(finished_jobs(daemon, "resync")) == 2, what="two resync jobs")
    readded = sorted(e["member"] for e in daemon.events() if e["event"] == "member_re_added")
    assert readded == [str(daemon.members[3]), str(daemon.members[4])]
    array = daemon.call("status")["array"]
    assert array["state"] == "clean"
    assert [member["state"] for member in array["members"]] == ["in_sync"] * 5
    scrub = daemon.raidctl("scrub", "--wait", "--json")
    assert scrub.returncode == 0, scrub.stdout + scrub.stderr
    assert daemon.stop() == 0


def test_spare_for_every_degraded_role(make_daemon, tmp_path: Path) -> None:
    """Two failed roles of a RAID6 are both rebuilt onto spares, one after the other."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "orders.bin").write_bytes(os.urandom(300_000))
    daemon = make_daemon(level=6, members=5)
    daemon.start()
    assert daemon.raidctl("fail", str(daemon.members[1])).returncode == 0
    assert daemon.raidctl("fail", "--force", str(daemon.members[3])).returncode == 0
    assert daemon.call("status")["array"]["state"] == "degraded"
    # A slow first rebuild, so the second spare arrives while it runs and must wait.
    assert daemon.raidctl("limits", "--min", "0.01", "--max", "0.01").returncode == 0
    spares = [tmp_path / "spare-a", tmp_path / "spare-b"]
    for spare in spares:
        with open(spare, "wb") as image:
            image.truncate(16 * MiB)
    first = daemon.call("add", {"path": str(spares[0])})
    second = daemon.call("add", {"path": str(spares[1])})
    assert first["job"] is not None
    assert second["job"] is None
    assert daemon.raidctl("limits", "--min", "10", "--max", "0").returncode == 0
    wait_for(lambda: len(finished_jobs(daemon, "rebuild")) == 2, what="two rebuild jobs")
    array = daemon.call("status")["array"]
    assert array["state"] == "clean"
    by_role = {member["role"]: member for member in array["members"]}
    assert by_role[1]["path"] == str(spares[0])
    assert by_role[3]["path"] == str(spares[1])
    assert all(member["state"] == "in_sync" for member in array["members"])
    assert daemon.stop() == 0
