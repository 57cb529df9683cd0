"""raidctl and raidd error reporting: one line, the right exit code, no traceback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from raidd.cli import main as raidd_main
from raidd.control.client import ControlClient, ControlConnectionError
from raidd.ctl.backups import describe_sync
from raidd.ctl.jobs import describe_limits
from raidd.ctl.status import render
from raidd.raidctl import main as raidctl_main
from raidd.toplevel import EXIT_BROKEN_PIPE, run_command
from tests.control.conftest import run_as


class FakeServer:
    """A control socket that replies to every request line with a canned reply."""

    def __init__(self, path: Path, reply: Any) -> None:
        self.path = path
        self.reply = reply
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if data:
                    request = json.loads(data)
                    reply = self.reply(request) if callable(self.reply) else self.reply
                    connection.sendall(json.dumps(reply).encode() + b"\n")

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(autouse=True)
def keep_logging_configuration() -> Iterator[None]:
    """raidctl's main() configures structlog for itself; later tests get theirs back."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def fake_server(tmp_path: Path) -> Iterator[Any]:
    servers: list[FakeServer] = []

    def make(reply: Any) -> FakeServer:
        server = FakeServer(tmp_path / f"fake-{len(servers)}.sock", reply)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def run_raidctl(
    capsys: pytest.CaptureFixture[str], socket_path: Path, *args: str
) -> tuple[int, str, str]:
    code = raidctl_main(["--socket", str(socket_path), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def result_of(value: Any) -> Any:
    return lambda request: {"jsonrpc": "2.0", "id": request["id"], "result": value}


@pytest.mark.parametrize(
    "result",
    [None, {"array": {"uuid": "u"}}, {"array": None}, []],
    ids=["null", "missing-keys", "null-array", "list"],
)
def test_status_unexpected_reply_exits_2(
    fake_server: Any, capsys: pytest.CaptureFixture[str], result: Any
) -> None:
    server = fake_server(result_of(result))
    code, out, err = run_raidctl(capsys, server.path, "status")
    assert code == 2
    assert out == ""
    assert err.startswith(f"raidctl status: unexpected reply from {server.path}")
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_reply_with_other_id_named(fake_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    server = fake_server(lambda request: {"jsonrpc": "2.0", "id": 999, "result": {}})
    code, _, err = run_raidctl(capsys, server.path, "status")
    assert code == 2
    assert "unexpected reply" in err
    assert "id 999, but the request had id 1" in err


def test_json_error_also_on_stdout(fake_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    error = {"code": -32602, "message": "snapshots: limit must be 0 or more, not -1"}
    server = fake_server(lambda request: {"jsonrpc": "2.0", "id": request["id"], "error": error})
    code, out, err = run_raidctl(capsys, server.path, "snapshots", "--limit", "-1", "--json")
    assert code == 2
    assert err == "raidctl snapshots: snapshots: limit must be 0 or more, not -1\n"
    document = json.loads(out)
    assert document["error"]["message"] == "snapshots: limit must be 0 or more, not -1"
    assert document["error"]["exit_code"] == 2
    assert document["error"]["code"] == -32602


def test_socket_not_a_socket(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    regular = tmp_path / "file"
    regular.write_text("")
    code, _, err = run_raidctl(capsys, regular, "status")
    assert code == 2
    assert "it is not a socket" in err
    code, _, err = run_raidctl(capsys, tmp_path, "status")
    assert code == 2
    assert "it is a directory" in err


def test_socket_nobody_listens(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    code, _, err = run_raidctl(capsys, path, "status")
    assert code == 2
    assert "no process listens on it" in err


def test_no_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert raidctl_main([]) == 2
    assert "usage: raidctl" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--max", "nan", "invalid rate 'nan'"),
        ("--max", "1e400", "invalid rate '1e400'"),
        ("--max", "-1", "invalid rate '-1'"),
        ("--min", "0", "invalid minimum rate 0"),
    ],
)
def test_limits_rejects_invalid_rates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, expected: str
) -> None:
    code = raidctl_main(["--socket", str(tmp_path / "none.sock"), "limits", option, value])
    assert code == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--json", "ls", "data", "--commit", "abc"], "argument --commit: invalid int value"),
        (["scrub", "--bogus", "--json"], "unrecognized arguments: --bogus"),
        (["--json", "nosuchcommand"], "invalid choice: 'nosuchcommand'"),
    ],
)
def test_usage_errors_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """With --json, a usage error that argparse finds is printed to stdout as JSON too."""
    code = raidctl_main(["--socket", str(tmp_path / "none.sock"), *argv])
    assert code == 2
    out, err = capsys.readouterr()
    assert message in err
    assert "usage: raidctl" in err
    document = json.loads(out)
    assert message in document["error"]["message"]
    assert document["error"]["exit_code"] == 2


def test_usage_error_without_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = raidctl_main(["--socket", str(tmp_path / "none.sock"), "ls", "data", "--commit", "x"])
    assert code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.endswith("raidctl ls: argument --commit: invalid int value: 'x'\n")


def test_raidd_usage_error_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert raidd_main(["ls", "--commit", "x", "--json"]) == 2
    out, err = capsys.readouterr()
    assert "raidd ls: argument --commit: invalid int value: 'x'" in err
    assert json.loads(out)["error"]["exit_code"] == 2


def test_key_add_into_missing_directory(
    tmp_path: Path, fake_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = fake_server(result_of({"slot": 1}))
    keyfile = tmp_path / "nodir" / "k.key"
    code, _, err = run_raidctl(capsys, server.path, "key", "add", "--new-keyfile", str(keyfile))
    assert code == 2
    assert f"directory {keyfile.parent} does not exist" in err
    assert not keyfile.parent.exists()


def test_unexpected_exception_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAIDD_DEBUG", raising=False)

    def broken() -> int:
        raise ZeroDivisionError("division by zero")

    assert run_command("raidd ls", False, broken) == 2
    err = capsys.readouterr().err
    assert err == (
        "raidd ls: unexpected error, probably a bug in raidd: ZeroDivisionError: division by "
        "zero; set RAIDD_DEBUG=1 to print the traceback\n"
    )
    monkeypatch.setenv("RAIDD_DEBUG", "1")
    assert run_command("raidd ls", False, broken) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_os_error_names_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def denied() -> int:
        raise PermissionError(13, "Permission denied", str(tmp_path / "x"))

    assert run_command("raidd restore", False, denied) == 2
    assert capsys.readouterr().err == f"raidd restore: {tmp_path / 'x'}: Permission denied\n"


def test_closed_stdout_exits_quietly() -> None:
    """`raidd --json snapshots | head -1`: the reader goes away, no traceback."""
    program = (
        "import sys\n"
        "from raidd.toplevel import run_command\n"
        "def run():\n"
        "    for i in range(100000):\n"
        "        print('line', i)\n"
        "    return 0\n"
        "sys.exit(run_command('raidd snapshots', True, run))\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", program], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert child.stdout is not None and child.stderr is not None
    assert child.stdout.readline() == b"line 0\n"
    child.stdout.close()
    err = child.stderr.read()
    assert child.wait(timeout=30) == EXIT_BROKEN_PIPE
    assert err == b""


def test_readable_summaries() -> None:
    assert describe_limits({"min_mib_s": 10.0, "max_mib_s": 0.0}) == (
        "rate limits: minimum 10 MiB/s, maximum unlimited"
    )
    assert describe_limits({"min_mib_s": 0.5, "max_mib_s": 200.0}) == (
        "rate limits: minimum 0.5 MiB/s, maximum 200 MiB/s"
    )
    unchanged = describe_sync({"commit": 7, "time": "2026-12-04T13:20:01Z", "changed": False})
    assert unchanged.startswith("nothing changed since commit 7 at 2026-12-04T13:20:01Z")
    assert describe_sync({"commit": 8, "time": "T", "changed": True}) == "commit 8 at T"


def test_unnamed_array_shows_uuid_once() -> None:
    array = {
        "uuid": "6f1c0000-0000-4000-8000-000000000000",
        "name": None,
        "level": 1,
        "state": "clean",
        "event": 3,
        "stripes": 10,
        "allocated_stripes": 1,
        "free_stripes": 9,
        "used_bytes": 4096,
        "size_bytes": 40960,
        "used_fraction": 0.1,
        "members": [],
    }
    first = render({"array": array}).splitlines()[0]
    assert first.count(array["uuid"]) == 1
    assert os.sep not in first


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to uid 65534")
def test_socket_permission_denied_explained() -> None:
    directory = Path(tempfile.mkdtemp(prefix="raidd-ctl-errors-", dir="/tmp"))
    try:
        directory.chmod(0o755)
        server = FakeServer(directory / "ctl.sock", {"jsonrpc": "2.0", "id": 1, "result": {}})
        (directory / "ctl.sock").chmod(0o600)

        def child() -> str:
            try:
                ControlClient(directory / "ctl.sock").connect()
            except ControlConnectionError as error:
                return str(error)
            return "connected"

        message = run_as(65534, 65534, [], child)
        server.close()
        assert "permission denied" in message
        assert "[control] group" in message
        assert "is raidd running" not in message
    finally:
        shutil.rmtree(directory, ignore_errors=True)
