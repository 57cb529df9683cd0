"""`raidctl fail --force` beyond the tolerance; `raidd assemble --force` after such a failure."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from raidd.array import assemble, fail_member
from raidd.errors import ArrayError
from tests.serve.test_serve_lost import offline


def test_fail_force_beyond_tolerance_is_refused(make_daemon, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.bin").write_bytes(random.Random(3).randbytes(50_000))
    daemon = make_daemon(level=5, members=3)
    daemon.start()
    assert daemon.raidctl("fail", str(daemon.members[0])).returncode == 0
    rejected = daemon.raidctl("fail", "--force", str(daemon.members[1]))
    assert rejected.returncode == 2
    assert "nothing was changed" in rejected.stderr
    states = [m["state"] for m in daemon.call("status")["array"]["members"]]
    assert states == ["faulty", "in_sync", "in_sync"]
    assert daemon.stop() == 0
    daemon.start()
    assert daemon.call("status")["array"]["state"] == "degraded"
    assert daemon.stop() == 0


def test_assemble_force_takes_back_a_member_marked_failed(make_daemon, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.bin").write_bytes(random.Random(4).randbytes(50_000))
    daemon = make_daemon(level=5, members=3)
    daemon.start()
    assert daemon.raidctl("sync").returncode == 0
    assert daemon.stop() == 0
    paths = [str(p) for p in daemon.members]
    with assemble(paths) as array:
        fail_member(array, paths[0])
        with pytest.raises(ArrayError):
            fail_member(array, paths[1], vanished=True)

    code, text = offline("--config", str(daemon.config), "restore", "--to", str(tmp_path / "r"))
    assert code == 2
    assert f"present at {paths[1]}): marked failed by commit" in text
    code, text = offline("--config", str(daemon.config), "assemble")
    assert code == 1, text
    assert f"{paths[0]}: marked failed, data matches" in text
    code, text = offline("--config", str(daemon.config), "assemble", "--force")
    assert code == 0, text
    assert f"{paths[0]}: marked failed, data matches" in text
    assert "taken back" in text
    code, text = offline("--config", str(daemon.config), "restore", "--to", str(tmp_path / "r"))
    assert code == 0, text
    assert (tmp_path / "r" / "data" / "a.bin").read_bytes() == (
        tmp_path / "data" / "a.bin"
    ).read_bytes()
