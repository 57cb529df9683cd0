"""Smoke tests of the backup benchmark's helpers; the benchmark itself never runs here."""

import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import _backup_report
import _common
import backup

MIB = 1024 * 1024


def test_run_measured_peak_rss_of_child() -> None:
    program = "import time; block = bytearray(96 << 20); time.sleep(0.3); print('done')"
    measurement = _common.run_measured([sys.executable, "-c", program], sample_interval=0.02)
    assert measurement.returncode == 0
    assert measurement.stdout.strip() == "done"
    assert measurement.max_process_rss >= 96 * MIB
    assert measurement.max_process_rss < 400 * MIB
    assert measurement.tree_rss >= 96 * MIB
    assert measurement.seconds >= 0.3
    assert measurement.cpu_seconds > 0


def test_run_measured_grandchild_counts() -> None:
    inner = "block = bytearray(80 << 20)"
    program = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {inner!r}])"
    measurement = _common.run_measured([sys.executable, "-c", program])
    assert measurement.max_process_rss >= 80 * MIB


def test_run_measured_failing_exit_code() -> None:
    measurement = _common.run_measured([sys.executable, "-c", "import sys; sys.exit(3)"])
    assert measurement.returncode == 3


def make_tree(root: Path) -> None:
    (root / "db").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "a.txt").write_bytes(b"alpha")
    (root / "link").symlink_to("a.txt")
    connection = sqlite3.connect(root / "db" / "crm.db")
    connection.execute("CREATE TABLE t (x TEXT)")
    connection.executemany("INSERT INTO t VALUES (?)", [(f"row {i}",) for i in range(500)])
    connection.execute("DELETE FROM t WHERE rowid % 2 = 0")
    connection.commit()
    connection.close()


def test_compare_trees_identical_copy(tmp_path: Path) -> None:
    make_tree(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b", symlinks=True)
    assert _common.compare_trees(tmp_path / "a", tmp_path / "b") == []


def test_compare_trees_finds_differences(tmp_path: Path) -> None:
    make_tree(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b", symlinks=True)
    (tmp_path / "b" / "a.txt").write_bytes(b"alphA")
    (tmp_path / "b" / "empty").rmdir()
    (tmp_path / "b" / "extra").write_bytes(b"")
    problems = _common.compare_trees(tmp_path / "a", tmp_path / "b")
    assert len(problems) == 3
    assert problems[0].startswith("a.txt:")
    assert problems[1] == "empty: missing"
    assert problems[2] == "extra: not in the original"


def test_compare_trees_database_by_dump(tmp_path: Path) -> None:
    make_tree(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b", symlinks=True)
    copy = tmp_path / "b" / "db" / "crm.db"
    copy.unlink()
    connection = sqlite3.connect(tmp_path / "a" / "db" / "crm.db")
    connection.execute("VACUUM INTO ?", (str(copy),))
    connection.close()
    assert copy.read_bytes() != (tmp_path / "a" / "db" / "crm.db").read_bytes()
    assert _common.compare_trees(tmp_path / "a", tmp_path / "b") == []
    connection = sqlite3.connect(copy)
    connection.execute("INSERT INTO t VALUES ('new')")
    connection.commit()
    connection.close()
    assert _common.compare_trees(tmp_path / "a", tmp_path / "b") == [
        "db/crm.db: database .dump differs"
    ]


def test_find_tree_root_nested(tmp_path: Path) -> None:
    make_tree(tmp_path / "x" / "tmp" / "data")
    assert _common.find_tree_root(tmp_path / "x", "db/crm.db") == tmp_path / "x" / "tmp" / "data"
    assert _common.find_tree_root(tmp_path / "x", "db/none.db") is None


def record_with(name: str, **best: float) -> _backup_report.ToolRecord:
    record = _backup_report.ToolRecord(name)
    for step, seconds in best.items():
        entry = record.steps[step.replace("_", " ")]
        entry.seconds.append(seconds)
        entry.peak_rss.append(100 * MIB)
    return record


def test_targets_against_better_peer() -> None:
    steps = {"first_backup": 4.0, "no-change_backup": 1.0, "backup_after_mutate": 1.0}
    restic = record_with("restic", **steps, full_restore=2.0)
    borg = record_with("borg", **{**steps, "first_backup": 3.0}, full_restore=3.0)
    raidd = record_with("raidd", **{**steps, "first_backup": 1.5}, full_restore=2.0)
    restic.stored_after_mutate.append(1_000_000)
    borg.stored_after_mutate.append(2_000_000)
    raidd.stored_after_mutate.append(1_200_000)
    rows = {
        row["target"]: row
        for row in _backup_report.targets({"raidd": raidd, "restic": restic, "borg": borg}, 10**8)
    }
    first = rows["first backup throughput"]
    assert first["peer"] == "borg"
    assert first["ratio"] == pytest.approx(2.0)
    assert first["met"] is True
    assert rows["full restore throughput"]["peer"] == "restic"
    assert rows["full restore throughput"]["met"] is False
    stored = rows["bytes stored after mutate"]
    assert stored["peer"] == "restic"
    assert stored["ratio"] == pytest.approx(1.2)
    assert stored["met"] is False
    assert rows["peak RSS"]["ratio"] == pytest.approx(1.0)


def test_targets_raidd_not_available() -> None:
    restic = record_with("restic", first_backup=4.0)
    raidd = _backup_report.ToolRecord("raidd", reason="this raidd has no `backup` command")
    rows = _backup_report.targets({"raidd": raidd, "restic": restic}, 10**8)
    assert rows[0]["peer"] == "restic"
    assert rows[0]["ratio"] is None
    assert rows[0]["met"] is None


def test_walk_json_finds_nested_key() -> None:
    report = {"roots": [{"name": "crm", "stored_bytes": 1234}], "files": 3}
    assert ("stored_bytes", 1234) in list(backup.walk_json(report))
