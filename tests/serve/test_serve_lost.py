"""Stripes lost beyond the tolerance: scrub and rebuild results, status, exit codes, events."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
from pathlib import Path

import structlog

from raidd.array import assemble
from raidd.cli import main as raidd_main
from tests.serve.conftest import Daemon, wait_for


def corrupt_data_stripe(daemon: Daemon, roles: tuple[int, ...]) -> int:
    """Overwrite one data stripe's strips on `roles` behind the engine; return the stripe.

    The stripe is a third of the way through the allocated ones, in the
    middle of the big file's chunks, far from the metadata written after them.
    """
    paths = [str(p) for p in daemon.members]
    with assemble(paths) as array:
        allocated = array.map.allocated_stripes()
        stripe = int(allocated[len(allocated) // 3])
        rng = random.Random(stripe)
        for role in roles:
            member = array.slots[role].member
            assert member is not None
            os.pwrite(member.fd, rng.randbytes(array.io.strip_size), array.io.strip_offset(stripe))
    return stripe


def offline(*args: str) -> tuple[int, str]:
    saved = structlog.get_config()
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = raidd_main(list(args))
    finally:
        structlog.configure(**saved)
    return code, out.getvalue()


def test_scrub_of_a_lost_raid5_stripe(make_daemon, tmp_path: Path) -> None:
    """Same strip wrong on two RAID5 members: lost in the job, in status, exit 3, event."""
    heard = tmp_path / "events.jsonl"
    hook = tmp_path / "hook.sh"
    hook.write_text(f'#!/bin/sh\ncat >> "{heard}"\necho >> "{heard}"\n')
    hook.chmod(0o755)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "blob.bin").write_bytes(random.Random(1).randbytes(600_000))
    daemon = make_daemon(level=5, members=3, events=f'program = ["{hook}"]')
    daemon.start()
    assert daemon.raidctl("sync").returncode == 0
    assert daemon.stop() == 0
    stripe = corrupt_data_stripe(daemon, (0, 1))

    code, text = offline("--config", str(daemon.config), "scrub", "--check-only")
    assert code == 3, text
    assert "StripeError(" not in text
    assert f"stripe {stripe}: role 0 ({daemon.members[0]}): checksum mismatch" in text
    assert f"stripe {stripe} is lost: role 0 ({daemon.members[0]}: checksum mismatch)" in text

    daemon.start()
    assert daemon.raidctl("status", "--test").returncode == 0
    scrub = daemon.raidctl("scrub", "--wait")
    assert scrub.returncode == 3, scrub.stdout + scrub.stderr
    assert f"stripe {stripe} is lost" in scrub.stdout
    (job,) = [j for j in daemon.call("jobs", {"finished": True}) if j["kind"] == "scrub"]
    assert job["result"]["lost_stripes"] == [stripe]
    assert [m["role"] for m in job["result"]["lost"][0]["members"]] == [0, 1]
    array = daemon.call("status")["array"]
    assert (array["lost_stripe_count"], array["lost_stripes"]) == (1, [stripe])
    status = daemon.raidctl("status", "--test")
    assert status.returncode == 3
    assert f"DATA LOST: 1 stripe beyond the fault tolerance (stripe {stripe})" in status.stdout

    def scrub_events() -> list[dict]:
        if not heard.exists():
            return []
        records = [json.loads(line) for line in heard.read_text().splitlines() if line]
        return [r for r in records if r["event"] == "scrub_errors"]

    (event,) = wait_for(scrub_events, what="the scrub_errors event")
    assert event["lost_stripes"] == [stripe]
    assert daemon.stop() == 0
    # The mark is on the array: a restarted daemon still reports the stripe lost.
    daemon.start()
    assert daemon.raidctl("status", "--test").returncode == 3
    assert daemon.stop() == 0


def test_rebuild_across_a_lost_raid1_stripe(make_daemon, tmp_path: Path) -> None:
    """Both RAID1 mirrors wrong in one stripe: the rebuild lists it lost, and so does status."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "blob.bin").write_bytes(random.Random(2).randbytes(400_000))
    daemon = make_daemon(level=1, members=2)
    daemon.start()
    assert daemon.raidctl("sync").returncode == 0
    assert daemon.stop() == 0
    stripe = corrupt_data_stripe(daemon, (0, 1))
    daemon.start()
    assert daemon.raidctl("fail", str(daemon.members[1])).returncode == 0
    assert daemon.raidctl("remove", str(daemon.members[1])).returncode == 0
    spare = tmp_path / "spare.img"
    spare.write_bytes(b"")
    os.truncate(spare, daemon.members[0].stat().st_size)
    added = daemon.raidctl("add", str(spare), "--json")
    assert added.returncode == 0, added.stderr
    job_id = json.loads(added.stdout)["job"]
    follow = daemon.raidctl("progress", str(job_id), "--wait")
    assert follow.returncode == 3, follow.stdout + follow.stderr
    assert f"stripe {stripe} is lost" in follow.stdout
    array = daemon.call("status")["array"]
    assert array["state"] == "clean"
    assert array["lost_stripes"] == [stripe]
    assert daemon.raidctl("status", "--test").returncode == 3
    assert daemon.stop() == 0
