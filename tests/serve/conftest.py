"""Fixtures for the daemon tests: an image-file array, a configuration, `raidd serve` running."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog

from raidd.cli import main as raidd_main
from raidd.control import ControlClient
from raidd.raidctl import main as raidctl_main

MiB = 1024 * 1024
START_TIMEOUT = 20.0


@dataclass
class Daemon:
    """A `raidd serve` subprocess and the files it runs on."""

    directory: Path
    config: Path
    socket: Path
    members: list[Path]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=Path)

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        env = {**self.env, **(extra_env or {})}
        self.log_path = self.directory / f"daemon-{time.monotonic_ns()}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "raidd.cli", "serve", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"raidd serve exited at start:\n{self.log()}")
            if self.socket.exists():
                try:
                    with ControlClient(self.socket, timeout=5) as client:
                        client.call("methods")
                    return
                except Exception:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"raidd serve did not open its socket:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        with ControlClient(self.socket, timeout=30) as client:
            return client.call(method, params)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=30)
        self.process = None
        return code

    def raidctl(self, *args: str) -> Result:
        """Run raidctl in this process (a subprocess costs a second of imports)."""
        out, err = io.StringIO(), io.StringIO()
        saved = structlog.get_config()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = raidctl_main(["--socket", str(self.socket), *args])
        finally:
            structlog.configure(**saved)
        return Result(code, out.getvalue(), err.getvalue())


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def write_config(daemon: Daemon, **tables: str) -> None:
    directory = daemon.directory
    sections = {
        "array": f'members = ["{directory}/m*"]\nkeyfile = "{directory}/key"',
        "watch": f'path = "{directory}/data"',
        "control": f'socket = "{daemon.socket}"',
        "state": f'directory = "{directory}/state"',
        "watcher": "quiet_period = 0.2\nmax_delay = 1\nrescan_interval = 3600",
        **tables,
    }
    text = ""
    for name, body in sections.items():
        header = "[[watch]]" if name == "watch" else f"[{name}]"
        text += f"{header}\n{body}\n\n"
    daemon.config.write_text(text)


def _create(directory: Path, level: int, members: int) -> list[Path]:
    """Create the array in this process: a subprocess would cost a second of imports."""
    paths = [directory / f"m{index}" for index in range(members)]
    saved = structlog.get_config()
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = raidd_main(
                [
                    "create",
                    "--level",
                    str(level),
                    "--size",
                    "16MiB",
                    "--strip-size",
                    "4KiB",
                    "--name",
                    "crm",
                    "--new-keyfile",
                    str(directory / "key"),
                    *map(str, paths),
                ]
            )
    finally:
        structlog.configure(**saved)
    assert code == 0, out.getvalue()
    return paths


@pytest.fixture
def make_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Daemon]]:
    made: list[Daemon] = []

    def make(level: int = 5, members: int = 4, **tables: str) -> Daemon:
        directory = tmp_path
        (directory / "data").mkdir(exist_ok=True)
        monkeypatch.setenv("RAIDD_LOCK_DIR", str(directory / "lock"))
        env = {**os.environ}
        env.pop("NOTIFY_SOCKET", None)
        env.pop("CREDENTIALS_DIRECTORY", None)
        paths = _create(directory, level, members)
        daemon = Daemon(directory, directory / "raidd.toml", directory / "ctl.sock", paths, env)
        write_config(daemon, **tables)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket standing in for systemd's notification socket."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    yield sock, str(path)
    sock.close()


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or predicate}")
