"""Member error counters kept across restarts, and invalid superblock copies shown in status."""

from __future__ import annotations

import os
import random
from pathlib import Path

from raidd.array import assemble


def test_counters_and_invalid_copy_shown_after_restart(make_daemon, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.bin").write_bytes(random.Random(5).randbytes(100_000))
    daemon = make_daemon(level=5, members=3)
    daemon.start()
    assert daemon.raidctl("sync").returncode == 0
    assert daemon.stop() == 0
    paths = [str(p) for p in daemon.members]
    with assemble(paths) as array:
        stripe = int(array.map.allocated_stripes()[0])
        role = array.codec.data_roles(stripe)[0][0]
        member = array.slots[role].member
        assert member is not None
        offset = array.io.strip_offset(stripe)
        os.pwrite(member.fd, bytes(64), offset)
    # Break superblock copy 0 of member 2 (bytes 4096 to 8191, as the tester did).
    with open(paths[2], "r+b") as image:
        image.seek(4096)
        image.write(b"\xff" * 4096)

    daemon.start()
    # Shown until a commit of an even event rewrites copy 0, so look before any commit.
    members = daemon.call("status")["array"]["members"]
    assert any("superblock copy 0 is invalid" in note for note in members[2]["notes"])
    assert [m["notes"] for m in members[:2]] == [[], []]
    status = daemon.raidctl("status")
    assert "note: superblock copy 0 is invalid" in status.stdout
    scrub = daemon.raidctl("scrub", "--wait")
    assert scrub.returncode == 1, scrub.stdout + scrub.stderr
    members = daemon.call("status")["array"]["members"]
    assert members[role]["errors"]["checksum"] == 1
    assert daemon.stop() == 0

    daemon.start()
    members = daemon.call("status")["array"]["members"]
    assert [m["errors"]["checksum"] for m in members] == [int(r == role) for r in range(3)]
    assert daemon.stop() == 0
