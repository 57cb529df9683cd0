"""Control socket files: directory, mode, group, lock and stale sockets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from raidd.control.listener import bind_control_socket, resolve_group
from raidd.errors import ArrayBusyError, ConfigError
from tests.control.conftest import CONTROL_GID, require_root


def test_root_only_socket_mode(tmp_path: Path) -> None:
    path = tmp_path / "run" / "raidd" / "control.sock"
    bound = bind_control_socket(path)
    try:
        assert path.parent.is_dir()
        assert path.parent.stat().st_mode & 0o777 == 0o755
        assert path.stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "run" / "raidd" / "control.sock.lock").read_text() == f"{os.getpid()}\n"
    finally:
        bound.close()
    assert not path.exists()


def test_directories_ignore_umask(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "control.sock"
    old = os.umask(0o077)
    try:
        bound = bind_control_socket(path)
    finally:
        os.umask(old)
    bound.close()
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o755


def test_group_socket_mode_and_owner(tmp_path: Path) -> None:
    require_root()
    path = tmp_path / "control.sock"
    bound = bind_control_socket(path, group=CONTROL_GID)
    try:
        info = path.stat()
        assert info.st_mode & 0o777 == 0o660
        assert info.st_gid == CONTROL_GID
    finally:
        bound.close()


def test_stale_socket_removed(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, with no process behind it
    assert path.exists()
    bound = bind_control_socket(path)
    try:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(path))
        client.close()
    finally:
        bound.close()


def test_live_holder_keeps_socket(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    first = bind_control_socket(path)
    try:
        with pytest.raises(ArrayBusyError, match=rf"another raidd \(pid {os.getpid()}\)"):
            bind_control_socket(path)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(path))
        client.close()
    finally:
        first.close()


def test_holder_in_other_process(tmp_path: Path) -> None:
    """A lock held by another live process names that process's pid."""
    path = tmp_path / "control.sock"
    script = (
        "import sys, pathlib\n"
        "from raidd import logsetup\n"
        "from raidd.control.listener import bind_control_socket\n"
        "logsetup.configure(json=True)\n"
        f"bound = bind_control_socket(pathlib.Path({str(path)!r}))\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
        "bound.close()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "ready\n"
        with pytest.raises(ArrayBusyError, match=rf"pid {holder.pid}\)"):
            bind_control_socket(path)
    finally:
        holder.communicate("", timeout=30)
    assert holder.returncode == 0
    bind_control_socket(path).close()


def test_socket_after_killed_holder(tmp_path: Path) -> None:
    """A holder killed with SIGKILL leaves its socket file, which the next server replaces."""
    path = tmp_path / "control.sock"
    script = (
        "import pathlib, time\n"
        "from raidd import logsetup\n"
        "from raidd.control.listener import bind_control_socket\n"
        "logsetup.configure(json=True)\n"
        f"bound = bind_control_socket(pathlib.Path({str(path)!r}))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    assert holder.stdout.readline() == "ready\n"
    holder.kill()
    holder.wait(timeout=30)
    holder.stdout.close()
    assert path.exists()
    bound = bind_control_socket(path)
    bound.close()


def test_non_socket_in_the_way(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    path.write_text("not a socket")
    with pytest.raises(ConfigError, match="exists and is not a socket"):
        bind_control_socket(path)
    assert path.read_text() == "not a socket"


def test_path_too_long(tmp_path: Path) -> None:
    path = tmp_path / ("d" * 120) / "control.sock"
    with pytest.raises(ConfigError, match="longer than 107 bytes"):
        bind_control_socket(path)


def test_resolve_group() -> None:
    assert resolve_group("root") == 0
    with pytest.raises(ConfigError, match="group 'no-such-raidd-group' does not exist"):
        resolve_group("no-such-raidd-group")
