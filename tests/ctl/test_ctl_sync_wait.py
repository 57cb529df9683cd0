"""`raidctl sync` waits for its commit however long it takes, unless --timeout says otherwise."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from raidd import raidctl
from raidd.control import ControlClient


class SlowServer:
    """A control socket that replies to one request only when the test lets it."""

    def __init__(self, path: Path) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(1)
        self.received = threading.Event()
        self.reply = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            line = connection.makefile("rb").readline()
            request = json.loads(line)
            self.received.set()
            if not self.reply.wait(timeout=60):
                return
            result = {"commit": 7, "time": "2026-12-04T13:25:00Z", "changed": True, "failed": []}
            reply = {"jsonrpc": "2.0", "id": request["id"], "result": result}
            # A client that gave up has closed its end; nothing is left to reply to.
            with contextlib.suppress(BrokenPipeError):
                connection.sendall(json.dumps(reply).encode() + b"\n")

    def close(self) -> None:
        self.reply.set()
        self.thread.join(timeout=10)
        self.listener.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SlowServer]:
    slow = SlowServer(tmp_path / "ctl.sock")
    yield slow
    slow.close()


def _run(arguments: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = raidctl.main(arguments)
    return code, out.getvalue(), err.getvalue()


def test_sync_has_no_client_timeout(
    server: SlowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the daemon commits, raidctl's socket waits without a limit."""
    clients: list[ControlClient] = []

    class Recording(ControlClient):
        def connect(self) -> ControlClient:
            clients.append(self)
            return super().connect()

    monkeypatch.setattr(raidctl, "ControlClient", Recording)
    outcome: list[tuple[int, str, str]] = []
    runner = threading.Thread(
        target=lambda: outcome.append(_run(["--socket", str(tmp_path / "ctl.sock"), "sync"]))
    )
    runner.start()
    assert server.received.wait(timeout=30)
    [client] = clients
    assert client.timeout is None
    assert client._sock is not None
    assert client._sock.gettimeout() is None
    server.reply.set()
    runner.join(timeout=30)
    [(code, stdout, _)] = outcome
    assert code == 0
    assert stdout == "commit 7 at 2026-12-04T13:25:00Z\n"


def test_sync_timeout_option(server: SlowServer, tmp_path: Path) -> None:
    """--timeout gives up, names the seconds, and exits 2."""
    code, _, stderr = _run(["--socket", str(tmp_path / "ctl.sock"), "sync", "--timeout", "0.2"])
    assert server.received.is_set()
    assert code == 2
    assert "within 0.2 s" in stderr


def test_timeout_must_be_positive(tmp_path: Path) -> None:
    code, _, stderr = _run(["--socket", str(tmp_path / "none.sock"), "sync", "--timeout", "0"])
    assert code == 2
    assert "the timeout must be a positive number" in stderr
