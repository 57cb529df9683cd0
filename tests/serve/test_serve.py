"""`raidd serve` as a subprocess on image-file arrays, driven through raidctl and signals."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import tempfile
from pathlib import Path

import pytest

from raidd.control import ControlClient, RemoteError
from raidd.raidctl import build_parser as build_raidctl_parser
from raidd.raidctl import main as raidctl_main
from tests.serve.conftest import Daemon, wait_for, write_config


def receive_messages(sock: socket.socket, until: str) -> list[str]:
    messages = []
    while True:
        message = sock.recv(4096).decode()
        messages.append(message)
        if until in message.split("\n"):
            return messages


def test_status_socket_and_scrub(make_daemon) -> None:
    daemon = make_daemon()
    daemon.start()
    status = daemon.call("status")
    array = status["array"]
    assert array["name"] == "crm"
    assert array["level"] == 5
    assert array["state"] == "clean"
    assert [m["role"] for m in array["members"]] == [0, 1, 2, 3]
    assert {m["state"] for m in array["members"]} == {"in_sync"}
    assert array["members"][1]["path"] == str(daemon.members[1])
    assert array["members"][1]["errors"] == {"read": 0, "write": 0, "checksum": 0}
    assert status["jobs"] == []
    assert status["watcher"][0]["watching"] is True
    assert daemon.socket.stat().st_mode & 0o777 == 0o600
    scrub = daemon.raidctl("scrub", "--wait")
    assert scrub.returncode == 0, scrub.stderr
    assert "(scrub): done" in scrub.stdout
    jobs = daemon.call("jobs", {"finished": True})
    assert [j["kind"] for j in jobs] == ["scrub"]
    assert daemon.stop() == 0
    assert not daemon.socket.exists()


def test_sd_notify_messages(make_daemon, notify_socket) -> None:
    sock, path = notify_socket
    daemon = make_daemon()
    daemon.start({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    started = receive_messages(sock, "READY=1")
    assert any(m.startswith("STATUS=self-test") for m in started)
    assert any(m.startswith("EXTEND_TIMEOUT_USEC=") for m in started)
    ready = next(line for line in started[-1].split("\n") if line.startswith("STATUS="))
    assert ready.startswith("STATUS=serving array crm (clean), 1 watched roots")
    wait_for(lambda: "WATCHDOG=1" in sock.recv(4096).decode().split("\n"), what="WATCHDOG=1")
    daemon.process.send_signal(signal.SIGHUP)
    reload = receive_messages(sock, "READY=1")
    reloading = next(m for m in reload if "RELOADING=1" in m.split("\n"))
    assert "MONOTONIC_USEC=" in reloading
    assert daemon.stop() == 0
    stopping = receive_messages(sock, "STOPPING=1")
    assert stopping


def test_raidctl_fail_reads_degraded(make_daemon) -> None:
    daemon = make_daemon()
    daemon.start()
    assert daemon.raidctl("scrub", "--wait").returncode == 0  # a job that ended before
    failed = daemon.raidctl("fail", str(daemon.members[2]))
    assert failed.returncode == 0, failed.stderr
    assert "failed role 2" in failed.stdout
    status = daemon.raidctl("status", "--json")
    assert status.returncode == 0
    array = json.loads(status.stdout)["array"]
    assert array["state"] == "degraded"
    assert array["members"][2]["state"] == "faulty"
    assert daemon.raidctl("--json", "status", "--test").returncode == 1
    # A second failure would go beyond RAID5's tolerance.
    again = daemon.raidctl("fail", str(daemon.members[0]))
    assert again.returncode == 2
    assert "beyond the array's tolerance" in again.stderr
    # A spare added now takes the failed role and is rebuilt onto.
    spare = daemon.directory / "spare0"
    os.truncate(os.open(spare, os.O_CREAT | os.O_WRONLY, 0o600), 16 * 1024 * 1024)
    added = daemon.raidctl("--json", "add", str(spare))
    assert added.returncode == 0, added.stderr
    job = json.loads(added.stdout)["job"]
    assert isinstance(job, int)
    followed = daemon.raidctl("progress", str(job), "--wait")
    assert followed.returncode == 0, followed.stderr
    array = daemon.call("status")["array"]
    assert array["state"] == "clean"
    assert array["members"][2]["path"] == str(spare)
    assert daemon.stop() == 0


def test_deleted_image_member_fails(make_daemon) -> None:
    daemon = make_daemon()
    daemon.start()
    daemon.members[3].unlink()

    def member_state() -> str:
        return daemon.call("status")["array"]["members"][3]["state"]

    wait_for(lambda: member_state() == "faulty", what="member 3 faulty")
    assert daemon.call("status")["array"]["state"] == "degraded"
    assert any(e["event"] == "member_vanished" for e in daemon.events())
    assert daemon.stop() == 0


def test_replace_rebuilds(make_daemon, tmp_path: Path) -> None:
    daemon = make_daemon()
    daemon.start()
    new = tmp_path / "new0"
    os.truncate(os.open(new, os.O_CREAT | os.O_WRONLY, 0o600), 16 * 1024 * 1024)
    assert daemon.raidctl("fail", str(daemon.members[1])).returncode == 0
    replaced = daemon.raidctl("replace", str(daemon.members[1]), str(new), "--wait", "--json")
    assert replaced.returncode == 0, replaced.stderr
    job = json.loads(replaced.stdout)
    assert job["kind"] == "replace"
    assert job["state"] == "done"
    array = daemon.call("status")["array"]
    assert array["state"] == "clean"
    assert array["members"][1]["path"] == str(new)
    assert array["members"][1]["state"] == "in_sync"
    assert daemon.raidctl("status", "--test").returncode == 0
    assert daemon.stop() == 0


def test_sighup_reload(make_daemon, tmp_path: Path) -> None:
    daemon = make_daemon()
    daemon.start()
    (tmp_path / "exports").mkdir()
    config = daemon.config.read_text()
    daemon.config.write_text(
        config + f'[[watch]]\npath = "{tmp_path}/exports"\n\n[limits]\nrebuild_max_mib_s = 77\n'
    )
    daemon.process.send_signal(signal.SIGHUP)
    # The reload logs configuration_reloaded only after every part of it applies.
    wait_for(
        lambda: any(e["event"] == "configuration_reloaded" for e in daemon.events()),
        what="configuration reloaded",
    )
    assert len(daemon.call("status")["watcher"]) == 2
    assert daemon.call("limits")["max_mib_s"] == 77.0
    daemon.config.write_text("[array\nnot toml")
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: any(e["event"] == "reload_failed" for e in daemon.events()))
    assert len(daemon.call("status")["watcher"]) == 2
    write_config(daemon, array=f'members = ["{tmp_path}/m0"]\nkeyfile = "{tmp_path}/key"')
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: daemon.call("status")["daemon"]["restart_pending"] == ["array"])
    assert len(daemon.call("status")["array"]["members"]) == 4
    assert daemon.stop() == 0


def test_group_member_cannot_fail(make_daemon) -> None:
    # pytest's tmp_path is mode 0700, so the socket goes where uid 65534 can reach it.
    directory = Path(tempfile.mkdtemp(prefix="raidd-serve-"))
    directory.chmod(0o755)
    socket_path = directory / "ctl.sock"
    daemon = make_daemon(control=f'socket = "{socket_path}"\ngroup = "nogroup"')
    daemon.socket = socket_path
    try:
        _check_group_member(daemon)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _check_group_member(daemon: Daemon) -> None:
    daemon.start()
    assert daemon.socket.stat().st_mode & 0o777 == 0o660
    build_raidctl_parser()  # imports every module now: the child may not read them
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: uid and gid 65534, a member of the group nogroup
        os.close(read_fd)
        results = []
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with ControlClient(daemon.socket, timeout=10) as client:
                results.append(client.call("status")["array"]["state"])
                try:
                    client.call("fail", {"member": str(daemon.members[0])})
                    results.append("fail allowed")
                except RemoteError as error:
                    results.append(error.name + ": " + str(error))
            # The daemon's own directory is root's: raidctl, running as the
            # caller, cannot write there, so the restore fails.
            code = raidctl_main(["--socket", str(daemon.socket), "restore", "--to", "/var"])
            results.append(code)
        except BaseException as error:
            results.append(f"child error: {error!r}")
        os.write(write_fd, json.dumps(results).encode())
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        results = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert results[0] == "clean"
    assert results[1].startswith("access denied: method 'fail' requires root")
    assert results[2] == 2
    assert daemon.call("status")["array"]["state"] == "clean"
    assert daemon.stop() == 0


def test_beyond_tolerance_refused(make_daemon) -> None:
    daemon = make_daemon()
    daemon.members[0].unlink()
    daemon.members[1].unlink()
    with pytest.raises(AssertionError, match=r"beyond|missing"):
        daemon.start()
    assert daemon.process.returncode == 2


def test_wrong_key_exits_5(make_daemon, tmp_path: Path) -> None:
    daemon = make_daemon()
    (tmp_path / "key").chmod(0o600)
    (tmp_path / "key").write_bytes(os.urandom(32))
    with pytest.raises(AssertionError, match="no keyslot opens"):
        daemon.start()
    assert daemon.process.returncode == 5


def test_credential_wins_over_keyfile(make_daemon, tmp_path: Path) -> None:
    daemon = make_daemon()
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (tmp_path / "key").rename(credentials / "raidd.key")
    daemon.start({"CREDENTIALS_DIRECTORY": str(credentials)})
    unlocked = next(e for e in daemon.events() if e["event"] == "array_unlocked")
    assert unlocked["key_file"] == str(credentials / "raidd.key")
    assert daemon.stop() == 0


def test_changes_committed_and_restorable(make_daemon, tmp_path: Path) -> None:
    """Create, change, delete and rename files; each state is committed and restorable."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "customers.csv").write_text("id,name\n1,Alfreds\n")
    (data / "notes.txt").write_text("first\n")
    daemon = make_daemon()
    daemon.start()
    first = daemon.call("status")["last_commit"]
    assert first is not None
    (data / "customers.csv").write_text("id,name\n1,Alfreds\n2,Ana Trujillo\n")
    (data / "notes.txt").rename(data / "renamed.txt")
    (data / "attachments").mkdir()
    (data / "attachments" / "invoice.pdf").write_bytes(os.urandom(200_000))

    def newest() -> int:
        commit = daemon.call("status")["last_commit"]
        return commit["id"] if commit else 0

    second = wait_for(lambda: newest() > first["id"] and newest(), what="a commit of the edits")
    listing = daemon.call("ls", {"root": "data"})
    paths = {entry["path"] for entry in listing["entries"]}
    assert {"customers.csv", "renamed.txt", "attachments/invoice.pdf"} <= paths
    assert "notes.txt" not in paths
    (data / "renamed.txt").unlink()
    synced = daemon.raidctl("sync", "--json")
    assert synced.returncode == 0, synced.stderr
    third = json.loads(synced.stdout)["commit"]
    assert third > second

    old = tmp_path / "restore-first"
    restored = daemon.raidctl("restore", "data", "--to", str(old), "--commit", str(first["id"]))
    assert restored.returncode == 0, restored.stderr
    assert (old / "data" / "customers.csv").read_text() == "id,name\n1,Alfreds\n"
    assert (old / "data" / "notes.txt").read_text() == "first\n"
    assert not (old / "data" / "renamed.txt").exists()

    new = tmp_path / "restore-newest"
    assert daemon.raidctl("restore", "data", "--to", str(new)).returncode == 0
    assert (new / "data" / "attachments" / "invoice.pdf").read_bytes() == (
        data / "attachments" / "invoice.pdf"
    ).read_bytes()
    assert not (new / "data" / "renamed.txt").exists()
    unchanged = daemon.raidctl("sync", "--json")
    assert json.loads(unchanged.stdout) == {**json.loads(unchanged.stdout), "changed": False}
    assert json.loads(unchanged.stdout)["commit"] == third
    assert daemon.stop() == 0


def test_restart_without_state_keeps_history(make_daemon, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("one\n")
    daemon = make_daemon()
    daemon.start()
    before = daemon.call("snapshots")
    assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    shutil.rmtree(tmp_path / "state")
    daemon.start()
    after = daemon.call("snapshots")
    assert [s["id"] for s in after] == [s["id"] for s in before]
    assert daemon.stop() == 0


def test_degraded_restore_succeeds(make_daemon, tmp_path: Path) -> None:
    content = os.urandom(300_000)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "orders.db").write_bytes(content)
    daemon = make_daemon()
    daemon.start()
    daemon.members[0].unlink()
    wait_for(lambda: daemon.call("status")["array"]["state"] == "degraded", what="degraded")
    target = tmp_path / "out"
    restored = daemon.raidctl("restore", "data/orders.db", "--to", str(target))
    assert restored.returncode == 0, restored.stderr
    assert (target / "data" / "orders.db").read_bytes() == content
    assert daemon.stop() == 0


def test_returning_member_is_resynced(make_daemon, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("before\n")
    daemon = make_daemon()
    away = tmp_path / "away"
    daemon.members[3].rename(away)
    daemon.start()
    assert daemon.call("status")["array"]["members"][3]["state"] == "missing"
    (tmp_path / "data" / "b.txt").write_text("while away\n")
    assert daemon.raidctl("sync").returncode == 0
    assert daemon.stop() == 0
    away.rename(daemon.members[3])
    daemon.start()

    def resynced() -> bool:
        jobs = daemon.call("jobs", {"finished": True})
        return any(job["kind"] == "resync" and job["state"] == "done" for job in jobs)

    wait_for(resynced, what="the resync job of the returning member")
    array = daemon.call("status")["array"]
    assert array["state"] == "clean"
    assert array["members"][3]["state"] == "in_sync"
    assert daemon.stop() == 0


def test_malformed_requests_change_nothing(make_daemon, tmp_path: Path) -> None:
    """Random bytes, oversized lines and wrong types get errors; the daemon serves on."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("kept\n")
    daemon = make_daemon()
    daemon.start()
    before = daemon.call("snapshots")
    generator = random.Random(20261204)
    lines = [
        b"not json\n",
        b"[]\n",
        b'{"jsonrpc":"2.0","id":1,"method":"fail","params":{"member":7}}\n',
        b'{"jsonrpc":"2.0","id":2,"method":"restore","params":{"paths":"x"}}\n',
        b'{"jsonrpc":"2.0","id":3,"method":"ls","params":{"root":"data","commit":"1"}}\n',
        b'{"jsonrpc":"2.0","id":4,"method":"no.such.method"}\n',
        b"x" * (1024 * 1024 + 10) + b"\n",
    ]
    # Random lines without a newline inside, so that each gets exactly one reply.
    lines += [
        bytes(generator.choice(range(11, 256)) for _ in range(64)) + b"\n" for _ in range(300)
    ]
    with ControlClient(daemon.socket, timeout=30) as client:
        for line in lines:
            client.send_line(line)
            reply = client.read_message()
            assert "error" in reply, reply
        assert client.call("status")["array"]["state"] == "clean"
    assert daemon.call("snapshots") == before
    assert daemon.process.poll() is None
    assert daemon.stop() == 0


def test_sigkill_during_commits_loses_nothing(make_daemon, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    daemon = make_daemon(watcher="quiet_period = 0\nmax_delay = 0.1\nrescan_interval = 3600")
    daemon.start()
    committed: dict[int, str] = {}
    for round_number in range(5):
        (data / "ledger.txt").write_text(f"round {round_number}\n" * 1000)
        committed[daemon.call("sync")["commit"]] = f"round {round_number}\n" * 1000
    for round_number in range(5, 40):
        (data / "ledger.txt").write_text(f"round {round_number}\n" * 1000)
    daemon.stop(signal.SIGKILL)
    daemon.start()
    snapshots = {s["id"] for s in daemon.call("snapshots")}
    assert set(committed) <= snapshots
    for commit, content in committed.items():
        target = tmp_path / f"restore-{commit}"
        result = daemon.raidctl("restore", "data", "--to", str(target), "--commit", str(commit))
        assert result.returncode == 0, result.stderr
        assert (target / "data" / "ledger.txt").read_text() == content
    assert daemon.stop() == 0


def test_event_hook_hears_member_failed(make_daemon, tmp_path: Path) -> None:
    heard = tmp_path / "events.jsonl"
    hook = tmp_path / "hook.sh"
    hook.write_text(f'#!/bin/sh\ncat >> "{heard}"\n')
    hook.chmod(0o755)
    daemon = make_daemon(events=f'program = ["{hook}"]')
    daemon.start()
    assert daemon.raidctl("fail", str(daemon.members[1])).returncode == 0

    def events() -> list[str]:
        if not heard.exists():
            return []
        return [json.loads(line)["event"] for line in heard.read_text().splitlines()]

    wait_for(lambda: {"member_failed", "array_degraded"} <= set(events()), what="hook events")
    record = next(
        json.loads(line)
        for line in heard.read_text().splitlines()
        if json.loads(line)["event"] == "member_failed"
    )
    assert record["member"] == str(daemon.members[1])
    assert record["role"] == 1
    assert daemon.stop() == 0
