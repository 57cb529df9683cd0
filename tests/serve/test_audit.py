"""The audit log through `raidd serve`: records, path search, durability and tamper detection."""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from raidd.array import Reserve
from raidd.control import ControlClient, RemoteError
from raidd.store.objects import KIND_AUDIT, encode_root
from raidd.store.packing import Packer
from raidd.store.store import Store, UnlockKey
from tests.serve.conftest import Daemon, wait_for

# Path strings that appear in requests only, never as files, so that finding
# them on a member or in the state directory could come only from the audit log.
GHOST = "ghost-ledger-7f3a9c"
KEYFILE_SECRET = b"audit-test-keyfile-secret-" + bytes(range(40))


def records(daemon: Daemon, **params: Any) -> list[dict[str, Any]]:
    return daemon.call("audit", {"limit": 200, **params})["records"]


def wait_committed(daemon: Daemon, *actions: str) -> list[dict[str, Any]]:
    """Wait until a committed record of each action is listed; return the listing."""

    def ready() -> list[dict[str, Any]] | None:
        listed = records(daemon)
        committed = {r["action"] for r in listed if r["committed"]}
        return listed if set(actions) <= committed else None

    return wait_for(ready, timeout=20, what=f"committed audit records of {actions}")


def files_containing(paths: list[Path], needle: bytes) -> list[Path]:
    found = []
    for top in paths:
        candidates = [top] if top.is_file() else [p for p in top.rglob("*") if p.is_file()]
        found += [path for path in candidates if needle in path.read_bytes()]
    return found


def test_requests_recorded_without_paths(make_daemon, tmp_path: Path) -> None:
    """Restore, ls, key.add and fail records: caller ids, hashed paths, no secret, no path."""
    daemon = make_daemon()
    data = daemon.directory / "data"
    (data / "ledger").mkdir()
    (data / "ledger" / "a.csv").write_text("1,2,3\n")
    (data / "other.csv").write_text("4,5,6\n")
    daemon.start()
    assert daemon.raidctl("sync").returncode == 0
    restored = daemon.raidctl("restore", str(data / "ledger"), "--to", str(tmp_path / "out"))
    assert restored.returncode == 0, restored.stderr
    assert (tmp_path / "out" / "data" / "ledger" / "a.csv").read_text() == "1,2,3\n"
    assert (
        daemon.raidctl("restore", "data/other.csv", "--to", str(tmp_path / "o2")).returncode == 0
    )
    # A path that was never backed up is an error, and its request is audited all the same.
    ghost = daemon.raidctl("restore", str(data / GHOST), "--to", str(tmp_path / "o3"))
    assert ghost.returncode == 2, ghost.stderr
    assert "not found in commit" in ghost.stderr
    with pytest.raises(RemoteError, match="requested path not found") as listed_ghost:
        daemon.call("ls", {"root": "data", "prefix": GHOST})
    assert GHOST not in str(listed_ghost.value)
    secret = base64.b64encode(KEYFILE_SECRET).decode()
    daemon.call("key.add", {"keyfile": secret})
    before = len(records(daemon))
    for _ in range(3):
        daemon.call("status")
        daemon.call("jobs")
    assert len(records(daemon)) == before

    # No backup commit follows, so the daemon commits the records alone.
    listed = wait_committed(daemon, "restore", "ls", "key.add", "sync")
    restores = [r for r in listed if r["action"] == "restore"]
    assert len(restores) == 3
    for record in restores:
        assert record["actor"] == {"kind": "client", "uid": 0, "gid": 0, "pid": os.getpid()}
        assert len(record["paths"]) == 1
    assert [r["result"]["ok"] for r in restores].count(False) == 1
    assert {r["result"].get("files") for r in restores if r["result"]["ok"]} == {1}
    key_add = next(r for r in listed if r["action"] == "key.add")
    assert key_add["params"] == {"keyfile": "(removed)"}
    assert "status" not in {r["action"] for r in listed}
    assert "jobs" not in {r["action"] for r in listed}
    assert listed[-1]["action"] == "daemon_started"
    assert listed[-1]["actor"]["kind"] == "daemon"

    ledger = records(daemon, path=str(data / "ledger" / "a.csv"))
    assert [r["action"] for r in ledger if r["action"] == "restore"] == ["restore"]
    assert (
        ledger[0]["paths"]
        != next(r for r in records(daemon, path="data/other.csv") if r["action"] == "restore")[
            "paths"
        ]
    )
    by_root = {r["action"] for r in ledger}
    assert "sync" in by_root  # a sync of the whole root concerns every path under it
    other = records(daemon, path="data/other.csv")
    assert len([r for r in other if r["action"] == "restore"]) == 1

    scrub = daemon.raidctl("scrub", "--wait")
    assert scrub.returncode == 0, scrub.stderr
    listed = wait_committed(daemon, "scrub", "scrub_started", "scrub_finished")
    finished = next(r for r in listed if r["action"] == "scrub_finished")
    assert finished["actor"]["kind"] == "daemon"
    assert finished["params"]["errors"] == 0
    assert finished["params"]["repaired"] == 0

    failed = daemon.raidctl("fail", str(daemon.members[3]))
    assert failed.returncode == 0, failed.stderr
    # SIGTERM before the commit delay: the daemon commits the pending records on its way out.
    assert daemon.stop() == 0
    members = list(daemon.members)
    for needle in (GHOST.encode(), b"ledger", b"other.csv", KEYFILE_SECRET, secret.encode()):
        assert files_containing(members, needle) == [], needle
    assert files_containing([daemon.directory / "state"], GHOST.encode()) == []
    audit_lines = [e for e in daemon.events() if e.get("event") == "audit"]
    assert {e["action"] for e in audit_lines} >= {"restore", "fail", "key.add", "member_failed"}
    assert all(GHOST not in str(e) for e in audit_lines)
    assert GHOST not in daemon.log()

    shutil.rmtree(daemon.directory / "state")
    daemon.start()
    listed = records(daemon)
    actions = [r["action"] for r in listed if r["committed"]]
    assert {"fail", "member_failed", "daemon_stopping"} <= set(actions)
    fail = next(r for r in listed if r["action"] == "fail")
    assert fail["actor"]["pid"] == os.getpid()
    assert fail["params"] == {"member": str(daemon.members[3]), "force": False}
    assert fail["result"]["state"] == "degraded"
    verified = daemon.raidctl("audit", "--verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "audit chain whole" in verified.stdout
    listing = daemon.raidctl("audit", "--limit", "5")
    assert listing.returncode == 0
    assert len(listing.stdout.splitlines()) == 5
    assert "daemon_started" in listing.stdout.splitlines()[0]
    assert daemon.stop() == 0


def open_offline(daemon: Daemon) -> Store:
    return Store.open_members(
        [str(m) for m in daemon.members],
        UnlockKey(keyfile=daemon.directory / "key"),
        read_only=False,
    )


def corrupt_audit_object(daemon: Daemon, position: int) -> None:
    """Flip one sealed byte of an audit object on its member, and the same byte of the parity."""
    with open_offline(daemon) as store:
        piece = store.audit_refs()[position].copies[0][0]
        array = store.array
        strip = array.codec.strip_size
        index = (piece.offset + 60) // strip
        data_roles = array.codec.data_roles(piece.stripe)
        roles = {*data_roles[index], *(set(range(len(array.slots))) - set().union(*data_roles))}
        offset = array.io.strip_offset(piece.stripe) + (piece.offset + 60) % strip
    for role in roles:
        with open(daemon.members[role], "r+b") as image:
            image.seek(offset)
            byte = image.read(1)
            image.seek(offset)
            image.write(bytes([byte[0] ^ 0x01]))


def remove_audit_object(daemon: Daemon, position: int) -> None:
    """Commit a manifest without one audit object, through the store API."""
    with open_offline(daemon) as store:
        kept = [ref for i, ref in enumerate(store.audit_refs()) if i != position]
        others = [ref for ref in store.history() if ref.kind != KIND_AUDIT]
        packer = Packer(store.array, reserve=Reserve.ALL)
        store.commit(None, packer, [], history=[*others, *kept])


def replace_head(daemon: Daemon, position: int) -> None:
    """Commit a metadata root whose audit chain head is another value."""
    with open_offline(daemon) as store:
        assert store.root is not None
        forged = type(store.root)(
            store.root.sequence, store.root.time_ns, store.root.manifest, b"\xee" * 32
        )
        store.array.commit(encode_root(forged))


@pytest.mark.parametrize(
    ("tamper", "position", "reason"),
    [
        (corrupt_audit_object, 1, "does not open"),
        (remove_audit_object, 1, "links to a head other than the previous"),
        (replace_head, 0, "eeeeeeee|links to a head other than the previous"),
    ],
    ids=["corrupt", "remove", "head"],
)
def test_tampering_detected(
    make_daemon,
    tmp_path: Path,
    tamper: Callable[[Daemon, int], None],
    position: int,
    reason: str,
) -> None:
    """With the daemon stopped, tamper with the log; verify exits 3, restores still work."""
    daemon = make_daemon()
    data = daemon.directory / "data"
    daemon.start()
    for step in range(3):
        (data / "notes.txt").write_text(f"version {step}\n")
        assert daemon.raidctl("sync").returncode == 0
    assert daemon.stop() == 0
    with open_offline(daemon) as store:
        assert len(store.audit_refs()) >= 3
        assert store.verify_audit().ok
    tamper(daemon, position)
    daemon.start()
    verified = daemon.raidctl("audit", "--verify")
    assert verified.returncode == 3, verified.stdout + verified.stderr
    # The daemon's own start record may be committed before the verification,
    # linked to the forged head: then the break is found at that record.
    assert any(part in verified.stdout for part in reason.split("|")), verified.stdout
    report = daemon.call("audit", {"verify": True, "limit": 0})["verify"]
    assert report["ok"] is False
    if tamper is not replace_head:
        assert report["broken"]["position"] == position
        assert report["broken"]["record"] > 0
    listing = daemon.raidctl("audit")
    if tamper is corrupt_audit_object:
        assert listing.returncode == 1, listing.stderr
        assert "does not open and was skipped" in listing.stderr
        assert "daemon_started" in listing.stdout
    else:
        assert listing.returncode == 0, listing.stderr
    restored = daemon.raidctl("restore", "data", "--to", str(tmp_path / "out"))
    assert restored.returncode == 0, restored.stderr
    assert (tmp_path / "out" / "data" / "notes.txt").read_text() == "version 2\n"
    assert daemon.stop() == 0


def test_group_member_and_schedule_recorded(make_daemon) -> None:
    """A group member's calls carry its own ids; scheduled retention and gc are recorded too."""
    # pytest's tmp_path is mode 0700, so the socket goes where uid 65534 can reach it.
    directory = Path(tempfile.mkdtemp(prefix="raidd-audit-"))
    directory.chmod(0o755)
    socket_path = directory / "ctl.sock"
    daemon = make_daemon(
        control=f'socket = "{socket_path}"\ngroup = "nogroup"',
        schedule="retention_interval = 1\ngc_interval = 1",
    )
    daemon.socket = socket_path
    try:
        daemon.start()
        child, results = run_as_nobody(daemon)
        assert results[0] == 1
        assert results[1].startswith("access denied: method 'fail' requires root")
        assert results[2].startswith("access denied: method 'audit' requires root")
        listed = wait_committed(daemon, "snapshots", "fail", "retention", "gc")
        snapshots = next(r for r in listed if r["action"] == "snapshots")
        assert snapshots["actor"] == {"kind": "client", "uid": 65534, "gid": 65534, "pid": child}
        assert snapshots["result"] == {"ok": True, "count": 1}
        denied = next(r for r in listed if r["action"] == "fail")
        assert denied["actor"]["uid"] == 65534
        assert denied["result"]["ok"] is False
        assert denied["result"]["code"] == -32001
        assert "audit" not in {r["action"] for r in listed}
        gc = next(r for r in listed if r["action"] == "gc")
        assert gc["actor"]["kind"] == "daemon"
        assert gc["params"]["ok"] is True
        # gc moves audit objects out of sparse stripes; the chain must stay whole.
        wait_for(
            lambda: len([r for r in records(daemon) if r["action"] == "gc"]) >= 3,
            what="three scheduled gc runs",
        )
        verified = daemon.raidctl("audit", "--verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert daemon.stop() == 0
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_as_nobody(daemon: Daemon) -> tuple[int, list[Any]]:
    """Call snapshots, fail and audit as uid 65534 in a child; return its pid and results."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        results: list[Any] = []
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with ControlClient(daemon.socket, timeout=10) as client:
                results.append(len(client.call("snapshots")))
                for method, params in (
                    ("fail", {"member": str(daemon.members[0])}),
                    ("audit", {}),
                ):
                    try:
                        client.call(method, params)
                        results.append(f"{method} allowed")
                    except RemoteError as error:
                        results.append(error.name + ": " + str(error))
        except BaseException as error:
            results.append(f"child error: {error!r}")
        os.write(write_fd, json.dumps(results).encode())
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        results = json.loads(pipe.read())
    os.waitpid(pid, 0)
    return pid, results


def test_restore_record_params(make_daemon, tmp_path: Path) -> None:
    """A restore record keeps dry run, overwrite, target and path count, and fails on misses."""
    daemon = make_daemon()
    data = daemon.directory / "data"
    (data / "a.csv").write_text("1,2\n")
    daemon.start()
    assert daemon.raidctl("sync").returncode == 0
    target = tmp_path / "out"
    dry = daemon.raidctl("restore", "data/a.csv", "--to", str(target), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    written = daemon.raidctl("restore", "data/a.csv", "--to", str(target), "--overwrite")
    assert written.returncode == 0, written.stderr
    partly = daemon.raidctl("restore", "data/a.csv", f"data/{GHOST}", "--to", str(target))
    assert partly.returncode == 2, partly.stderr

    listed = wait_committed(daemon, "restore")
    restores = [r for r in listed if r["action"] == "restore"]
    assert len(restores) == 3
    # Newest first: the partial restore, the overwriting one, the dry run.
    partial, overwriting, dry_run = restores
    assert dry_run["params"] == {
        "path_count": 1,
        "dry_run": True,
        "overwrite": False,
        "target": str(target),
    }
    assert dry_run["result"]["ok"] is True
    assert overwriting["params"]["dry_run"] is False
    assert overwriting["params"]["overwrite"] is True
    assert overwriting["result"]["files"] == 1
    assert overwriting["result"]["lost"] == 0
    assert partial["params"]["path_count"] == 2
    assert len(partial["paths"]) == 2
    assert partial["result"]["ok"] is False
    assert partial["result"]["missing_count"] == 1
    assert GHOST not in json.dumps(restores)
