"""Authorization by SO_PEERCRED and SO_PEERGROUPS, tested from forked children with other ids."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from raidd.control import ControlClient, RemoteError
from raidd.control.peer import (
    Access,
    Peer,
    Policy,
    parse_gids,
    peer_credentials,
    peer_groups_large,
)
from raidd.control.protocol import ACCESS_DENIED, TOO_MANY_CONNECTIONS
from tests.control.conftest import CONTROL_GID, NOBODY, ServerFactory, require_root, run_as


def connect_and_read(path: Path) -> dict[str, Any]:
    """Connect as the current ids, read the server's first line, and check it then hangs up."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(path))
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    closed = sock.recv(1) == b""
    sock.close()
    return {"line": json.loads(data), "closed": closed}


def call_methods(path: Path) -> dict[str, Any]:
    """Call a read method and an admin method; return what each returned."""
    outcomes: dict[str, Any] = {}
    with ControlClient(path) as client:
        outcomes["ping"] = client.call("ping", {"payload": "member"})
        try:
            outcomes["fail"] = client.call("fail", {"member": "/dev/loop3"})
        except RemoteError as error:
            outcomes["fail"] = {"code": error.code, "message": str(error)}
        outcomes["methods"] = sorted(entry["name"] for entry in client.call("methods"))
        outcomes["after"] = client.call("status")
    return outcomes


def test_peer_credentials_of_socketpair() -> None:
    left, right = socket.socketpair()
    peer = peer_credentials(left)
    left.close()
    right.close()
    assert peer.pid == os.getpid()
    assert peer.uid == os.getuid()
    assert peer.gid == os.getgid()
    assert sorted(peer.groups) == sorted(os.getgroups())


def test_parse_gids() -> None:
    assert parse_gids(b"") == ()
    assert parse_gids((100).to_bytes(4, "little") + (54321).to_bytes(4, "little")) == (100, 54321)
    with pytest.raises(ValueError, match="not a whole number"):
        parse_gids(b"\x01\x02\x03")


def test_policy_rules() -> None:
    policy = Policy(group=CONTROL_GID)
    assert policy.access_of(Peer(1, 0, 0, ())) is Access.ADMIN
    assert policy.access_of(Peer(1, 1000, CONTROL_GID, ())) is Access.READ
    assert policy.access_of(Peer(1, 1000, 1000, (5, CONTROL_GID))) is Access.READ
    assert policy.access_of(Peer(1, 1000, 1000, (5,))) is None
    assert Policy(group=None).access_of(Peer(1, 1000, CONTROL_GID, (CONTROL_GID,))) is None


def test_nobody_rejected_by_server_check(make_server: ServerFactory) -> None:
    """Uid 65534 reaches a mode 0666 socket, and the server's own check rejects it."""
    require_root()
    server = make_server(mode=0o666)
    assert server.path.stat().st_mode & 0o777 == 0o666
    outcome = run_as(NOBODY, NOBODY, [], lambda: connect_and_read(server.path))
    assert outcome["line"]["id"] is None
    assert outcome["line"]["error"]["code"] == ACCESS_DENIED
    assert "access denied for uid 65534" in outcome["line"]["error"]["message"]
    assert outcome["closed"] is True
    with ControlClient(server.path) as client:
        assert client.call("ping")["uid"] == 0


def test_nobody_rejected_with_group_configured(make_server: ServerFactory) -> None:
    require_root()
    server = make_server(group=CONTROL_GID, mode=0o666)
    outcome = run_as(NOBODY, NOBODY, [], lambda: connect_and_read(server.path))
    assert outcome["line"]["error"]["code"] == ACCESS_DENIED
    assert f"members of group {CONTROL_GID}" in outcome["line"]["error"]["message"]
    assert outcome["closed"] is True


def test_group_member_reads_but_cannot_administer(make_server: ServerFactory) -> None:
    require_root()
    server = make_server(group=CONTROL_GID)
    outcomes = run_as(NOBODY, NOBODY, [CONTROL_GID], lambda: call_methods(server.path))
    assert outcomes["ping"]["pong"] == "member"
    assert outcomes["ping"]["uid"] == NOBODY
    assert outcomes["fail"]["code"] == ACCESS_DENIED
    assert "'fail' requires root" in outcomes["fail"]["message"]
    assert "fail" not in outcomes["methods"]
    assert "ping" in outcomes["methods"]
    assert outcomes["after"] == {"array": {"state": "clean"}}


def test_primary_group_member_reads(make_server: ServerFactory) -> None:
    require_root()
    server = make_server(group=CONTROL_GID)
    outcomes = run_as(NOBODY, CONTROL_GID, [], lambda: call_methods(server.path))
    assert outcomes["ping"]["uid"] == NOBODY
    assert outcomes["fail"]["code"] == ACCESS_DENIED


def test_member_with_many_groups(make_server: ServerFactory) -> None:
    """More than 256 supplementary groups take the libc getsockopt path."""
    require_root()
    server = make_server(group=CONTROL_GID)
    groups = [*range(20000, 20300), CONTROL_GID]
    outcomes = run_as(NOBODY, NOBODY, groups, lambda: call_methods(server.path))
    assert outcomes["ping"]["uid"] == NOBODY
    assert outcomes["fail"]["code"] == ACCESS_DENIED


def test_large_group_list_parsed() -> None:
    require_root()
    groups = list(range(30000, 30400))

    def read_own_groups() -> list[int]:
        left, right = socket.socketpair()
        found = sorted(parse_gids(peer_groups_large(left.fileno())))
        also = sorted(peer_credentials(left).groups)
        left.close()
        right.close()
        assert found == also
        return found

    assert run_as(NOBODY, NOBODY, groups, read_own_groups) == groups


def test_root_reserve_kept(make_server: ServerFactory) -> None:
    """Group members fill their share of connections; root still gets the reserved one."""
    require_root()
    server = make_server(group=CONTROL_GID, max_connections=3, root_reserve=1)
    result_read, result_write = os.pipe()
    release_read, release_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a group member that opens three connections
        code = 1
        try:
            os.setgroups([CONTROL_GID])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            clients = [ControlClient(server.path).connect() for _ in range(2)]
            pongs = [client.call("ping")["uid"] for client in clients]
            try:
                ControlClient(server.path).connect().call("ping")
                third = "served"
            except RemoteError as error:
                third = str(error.code)
            os.write(result_write, json.dumps({"pongs": pongs, "third": third}).encode())
            os.read(release_read, 1)
            code = 0
        finally:
            os._exit(code)
    os.close(result_write)
    try:
        outcome = json.loads(os.read(result_read, 4096))
        assert outcome == {"pongs": [NOBODY, NOBODY], "third": str(TOO_MANY_CONNECTIONS)}
        with ControlClient(server.path) as root_client:
            assert root_client.call("ping")["uid"] == 0
            with pytest.raises(RemoteError, match="3 connections are open") as raised:
                ControlClient(server.path).connect().call("ping")
            assert raised.value.code == TOO_MANY_CONNECTIONS
    finally:
        os.write(release_write, b"x")
        _, status = os.waitpid(pid, 0)
        os.close(result_read)
        os.close(release_read)
        os.close(release_write)
    assert os.waitstatus_to_exitcode(status) == 0


def test_stranger_client_sees_access_denied(make_server: ServerFactory) -> None:
    """ControlClient reports the server's reason, not a broken pipe, however the race goes."""
    require_root()
    server = make_server(mode=0o666)

    def call_repeatedly() -> list[int]:
        codes = []
        for _ in range(20):
            try:
                ControlClient(server.path).connect().call("ping")
            except RemoteError as error:
                codes.append(error.code)
        return codes

    assert run_as(NOBODY, NOBODY, [], call_repeatedly) == [ACCESS_DENIED] * 20
