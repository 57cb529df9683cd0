"""The main loop in a real subprocess: READY, SIGHUP reloads, SIGTERM stops, watchdog pings."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from raidd.daemon.lifecycle import Lifecycle

DAEMON = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from raidd import logsetup
    from raidd.daemon.lifecycle import Lifecycle
    from raidd.errors import ConfigError

    logsetup.configure(json=True)
    marks = Path(sys.argv[1])
    reloads = []

    def on_reload():
        reloads.append(1)
        with marks.open("a") as out:
            out.write(f"reload {len(reloads)}\\n")
        if len(reloads) == 2:
            raise ConfigError("[watch] root /nope does not exist")

    def on_stop():
        with marks.open("a") as out:
            out.write("stop\\n")

    lifecycle = Lifecycle(tick_interval=0.05)
    lifecycle.install_signal_handlers()
    with lifecycle.extending_start(seconds=20):
        pass
    sys.exit(
        lifecycle.run(
            ready_status="serving array crm",
            on_tick=lambda: None,
            on_reload=on_reload,
            on_stop=on_stop,
        )
    )
    """
)


class Manager:
    """A test service manager socket that skips watchdog pings unless asked for them."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(30)
        self.pings = 0

    def next_message(self) -> bytes:
        while True:
            message = self.sock.recv(4096)
            if message == b"WATCHDOG=1":
                self.pings += 1
                continue
            return message


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[Manager]:
    manager = Manager(tmp_path / "notify.sock")
    yield manager
    manager.sock.close()


def start_daemon(tmp_path: Path, watchdog_usec: int) -> subprocess.Popen[str]:
    environment = {
        **os.environ,
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
        "WATCHDOG_USEC": str(watchdog_usec),
    }
    return subprocess.Popen(
        [sys.executable, "-c", DAEMON, str(tmp_path / "marks")],
        env=environment,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_ready_reload_stop_sequence(tmp_path: Path, manager: Manager) -> None:
    daemon = start_daemon(tmp_path, watchdog_usec=200_000)
    try:
        assert manager.next_message() == b"EXTEND_TIMEOUT_USEC=20000000"
        assert manager.next_message() == b"READY=1\nSTATUS=serving array crm"

        daemon.send_signal(signal.SIGHUP)
        reloading = manager.next_message().split(b"\n")
        assert reloading[0] == b"RELOADING=1"
        assert reloading[1].startswith(b"MONOTONIC_USEC=")
        assert int(reloading[1].partition(b"=")[2]) > 0
        assert manager.next_message() == b"READY=1\nSTATUS=serving array crm"

        daemon.send_signal(signal.SIGHUP)
        assert manager.next_message().startswith(b"RELOADING=1\n")
        failed = manager.next_message()
        assert failed.startswith(b"READY=1\nSTATUS=serving array crm (reload failed: ")
        assert b"old configuration kept" in failed

        while manager.pings < 2:
            message = manager.sock.recv(4096)
            assert message == b"WATCHDOG=1"
            manager.pings += 1

        daemon.send_signal(signal.SIGTERM)
        assert manager.next_message() == b"STOPPING=1\nSTATUS=stopping"
        _, stderr = daemon.communicate(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 0
    assert (tmp_path / "marks").read_text() == "reload 1\nreload 2\nstop\n"
    assert '"event": "reload_failed"' in stderr
    assert "/nope does not exist" in stderr


def test_sigint_stops_too(tmp_path: Path, manager: Manager) -> None:
    daemon = start_daemon(tmp_path, watchdog_usec=0)
    try:
        assert manager.next_message().startswith(b"EXTEND_TIMEOUT_USEC=")
        assert manager.next_message().startswith(b"READY=1")
        daemon.send_signal(signal.SIGINT)
        assert manager.next_message() == b"STOPPING=1\nSTATUS=stopping"
        daemon.communicate(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 0
    assert manager.pings == 0


def test_request_stop_from_thread(manager: Manager, tmp_path: Path) -> None:
    """In-process: a tick that requests a stop ends the loop after one pass, then on_stop."""
    environ = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
    lifecycle = Lifecycle(environ, tick_interval=0.01)
    assert environ == {}
    events: list[str] = []

    def tick() -> None:
        events.append("tick")
        lifecycle.request_stop()

    status = lifecycle.run(
        ready_status="ready",
        on_tick=tick,
        on_reload=lambda: None,
        on_stop=lambda: events.append("stop"),
    )
    assert status == 0
    assert events == ["tick", "stop"]
    assert manager.next_message() == b"READY=1\nSTATUS=ready"
    assert manager.next_message() == b"STOPPING=1\nSTATUS=stopping"


def test_set_status(manager: Manager, tmp_path: Path) -> None:
    lifecycle = Lifecycle({"NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
    lifecycle.set_status("scanning 3 roots")
    assert manager.next_message() == b"STATUS=scanning 3 roots"
    assert lifecycle.status == "scanning 3 roots"


def test_extending_start_repeats(manager: Manager, tmp_path: Path) -> None:
    """A long start-up step keeps getting start-timeout extensions and watchdog pings."""
    environ = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "200000"}
    lifecycle = Lifecycle(environ)
    extensions = 0
    with lifecycle.extending_start(seconds=10):
        while extensions < 3 or manager.pings < 3:
            message = manager.next_message()
            assert message == b"EXTEND_TIMEOUT_USEC=10000000"
            extensions += 1
    assert extensions >= 3
    assert manager.pings >= 3


def test_wake_and_tick_delay_run_tick_early(manager: Manager, tmp_path: Path) -> None:
    """In-process: a long tick interval, cut short by wake() and by a tick's requested delay."""
    lifecycle = Lifecycle({}, tick_interval=3600)
    ticks: list[str] = []
    waker = threading.Thread(target=lifecycle.wake)

    def tick() -> float | None:
        ticks.append("tick")
        if len(ticks) == 1:
            waker.start()
            return None
        if len(ticks) == 2:
            return 0.0
        lifecycle.request_stop()
        return None

    status = lifecycle.run(
        ready_status="ready", on_tick=tick, on_reload=lambda: None, on_stop=lambda: None
    )
    waker.join()
    assert status == 0
    assert ticks == ["tick", "tick", "tick"]
