"""raidctl against a running daemon: paths not in a commit, conflicts, leftovers, messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.serve.conftest import Daemon

MTIME_NS = 1_700_000_000_000_000_000


def restore(daemon: Daemon, *args: str) -> tuple[int, str, str]:
    result = daemon.raidctl("restore", *args)
    return result.returncode, result.stdout, result.stderr


def test_restore_paths_and_conflicts(make_daemon, tmp_path: Path) -> None:
    """Missing paths are errors, a local edit is a conflict, leftovers of a kill are removed."""
    data = tmp_path / "data"
    (data / "exports").mkdir(parents=True)
    (data / "exports" / "products.csv").write_text("id,name\n1,Chai\n")
    (data / "notes").mkdir(mode=0o700)
    (data / "notes" / "a.txt").write_text("private\n")
    os.utime(data / "notes", ns=(MTIME_NS, MTIME_NS))
    daemon = make_daemon()
    daemon.start()
    commit = daemon.call("snapshots")[0]["id"]

    target = tmp_path / "rn"
    code, out, err = restore(daemon, "data/nosuch.txt", "--to", str(target))
    assert code == 2
    assert err == (
        f"raidctl restore: 'data/nosuch.txt' not found in commit {commit}; "
        "check the path with `ls`\n"
    )
    assert not target.exists()
    code, _, err = restore(daemon, "data", "--commit", "99", "--to", str(target))
    assert code == 2
    assert f"commit 99 not found; the oldest commit is {commit}" in err
    assert "raidd snapshots" not in err
    assert not target.exists()

    code, out, err = restore(daemon, "data/nosuch.txt", "data/exports", "--to", str(target))
    assert code == 2
    assert "'data/nosuch.txt' not found" in err
    assert (target / "data" / "exports" / "products.csv").read_text() == "id,name\n1,Chai\n"
    assert not (target / "data" / "notes").exists()

    # Restore, edit the copy, restore again: the edit is a conflict, not overwritten.
    code, _, err = restore(daemon, "data", "--to", str(target))
    assert code == 0, err
    assert os.stat(target / "data" / "notes").st_mode & 0o777 == 0o700
    assert os.stat(target / "data" / "notes").st_mtime_ns == MTIME_NS
    edited = target / "data" / "exports" / "products.csv"
    edited.write_text("LOCAL-EDIT\n")
    code, out, err = restore(daemon, "data", "--to", str(target), "--json")
    assert code == 1
    assert "'data/exports/products.csv' left alone" in err
    assert [item["path"] for item in json.loads(out)["conflicts"]] == ["data/exports/products.csv"]
    assert edited.read_text() == "LOCAL-EDIT\n"

    # Leftovers of a killed restore: only the exact pattern of a process that is gone.
    exports = target / "data" / "exports"
    dead_pid = _dead_pid()
    stale = exports / f".raidd-restore-{dead_pid}-0123456789abcdef"
    running = exports / f".raidd-restore-{os.getpid()}-0123456789abcdef"
    lookalike = exports / f".raidd-restore-{dead_pid}-0123456789abcdeX"
    for path in (stale, running, lookalike):
        path.write_bytes(b"partial")
    code, _, err = restore(daemon, "data", "--to", str(target), "--overwrite")
    assert code == 0, err
    assert edited.read_text() == "id,name\n1,Chai\n"
    assert not stale.exists()
    assert running.exists()
    assert lookalike.exists()
    assert daemon.stop() == 0


def test_restore_parents_get_recorded_mode(make_daemon, tmp_path: Path) -> None:
    """raidctl restore of ROOT/SUB into a new DIR gives DIR/ROOT the root's recorded mode."""
    data = tmp_path / "data"
    (data / "special").mkdir(parents=True, mode=0o750)
    (data / "special" / "a.txt").write_text("a\n")
    (data / "other.txt").write_text("b\n")
    os.chmod(data, 0o755)
    for directory in (data / "special", data):
        os.utime(directory, ns=(MTIME_NS, MTIME_NS))
    daemon = make_daemon()
    daemon.start()

    target = tmp_path / "out"
    code, out, err = restore(daemon, "data/special", "--to", str(target), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["directories"] == 1
    assert result["files"] == 1
    for directory, mode in ((target / "data", 0o755), (target / "data" / "special", 0o750)):
        info = os.stat(directory)
        assert info.st_mode & 0o777 == mode, directory
        assert info.st_mtime_ns == MTIME_NS, directory
    assert not (target / "data" / "other.txt").exists()
    assert daemon.stop() == 0


def test_ls_missing_root_or_path(make_daemon, tmp_path: Path) -> None:
    """`raidctl ls` of a missing root or path exits 2 naming it; ROOT/PATH lists as restore."""
    data = tmp_path / "data"
    (data / "exports").mkdir(parents=True)
    (data / "exports" / "products.csv").write_text("id,name\n")
    daemon = make_daemon()
    daemon.start()
    commit = daemon.call("snapshots")[0]["id"]

    no_root = daemon.raidctl("ls", "nosuchroot")
    assert no_root.returncode == 2
    assert "'nosuchroot' is not a watched root's name" in no_root.stderr
    assert f"roots: data ({data})" in no_root.stderr
    as_json = daemon.raidctl("--json", "ls", "nosuchroot")
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["error"]["exit_code"] == 2

    no_prefix = daemon.raidctl("ls", "data", "nosuch/dir")
    assert no_prefix.returncode == 2
    assert no_prefix.stderr.startswith(
        f"raidctl ls: 'data/nosuch/dir' not found in commit {commit}; "
    )
    assert no_prefix.stdout == ""
    assert "nosuch/dir" not in daemon.log()

    by_path = daemon.raidctl("ls", "data/exports")
    assert by_path.returncode == 0, by_path.stderr
    lines = by_path.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(" data/exports")
    assert lines[1].endswith(" data/exports/products.csv")
    listed = daemon.call("ls", {"root": str(data / "exports")})
    assert listed["root"] == "data"
    assert [entry["path"] for entry in listed["entries"]] == [
        "exports",
        "exports/products.csv",
    ]
    assert daemon.stop() == 0


def test_listing_and_maintenance_output(make_daemon, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    odd = os.fsencode(data) + b"/two\nlines.txt"
    with open(odd, "wb") as file:
        file.write(b"x")
    os.utime(odd, ns=(MTIME_NS, MTIME_NS))
    os.symlink("two\nlines.txt", data / "latest")
    daemon = make_daemon()
    daemon.start()

    listing = daemon.raidctl("ls", "data")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("d")
    assert lines[0].endswith(" data")
    assert lines[1].startswith("l")
    assert lines[1].endswith(" data/latest -> two\\nlines.txt")
    assert lines[2].startswith("-rw-")
    assert lines[2].endswith(" data/two\\nlines.txt")
    assert "2023-11-1" in lines[2]

    gc = daemon.raidctl("gc", "--dry-run")
    assert gc.returncode == 0, gc.stderr
    assert gc.stdout.startswith("would free ")
    assert "{" not in gc.stdout
    forget = daemon.raidctl("forget", "--dry-run")
    assert forget.returncode == 0, forget.stderr
    assert forget.stdout == "no [watch.retention] rules: every commit is kept\n"

    negative = daemon.raidctl("snapshots", "--limit", "-1")
    assert negative.returncode == 2
    assert "limit must be 0 or more, not -1" in negative.stderr
    limits = daemon.raidctl("limits", "--max", "0")
    assert limits.returncode == 0, limits.stderr
    assert limits.stdout.endswith("maximum unlimited\n")
    missing = daemon.raidctl("replace", daemon.members[0].name, str(tmp_path / "new.img"))
    assert missing.returncode == 2
    size = daemon.members[0].stat().st_size
    assert "new.img does not exist; create it first" in missing.stderr
    assert f"at least {size} bytes" in missing.stderr
    assert daemon.stop() == 0


def _dead_pid() -> int:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(child.stdout)
