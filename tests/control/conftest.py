"""Fixtures for the control socket tests: a registry of test methods and running servers."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from raidd import logsetup
from raidd.control import (
    Access,
    Call,
    ControlServer,
    JobRegistry,
    Limits,
    Registry,
)
from raidd.control.methods import introspection
from raidd.control.methods import jobs as job_methods
from raidd.errors import IntegrityError

NOBODY = 65534
# A gid that no test machine is expected to use for anything else.
CONTROL_GID = 54321


def build_registry(jobs: JobRegistry) -> Registry:
    """Return a registry with the read and admin methods the tests call."""
    registry = Registry()
    introspection.register(registry)
    job_methods.register(registry, jobs)

    def ping(call: Call, *, payload: str = "") -> dict[str, Any]:
        """Return the payload and the caller's ids."""
        return {"pong": payload, "uid": call.peer.uid, "pid": call.peer.pid}

    def status(call: Call) -> dict[str, Any]:
        """Return a fixed array status."""
        return {"array": {"state": "clean"}}

    def fail(call: Call, *, member: str) -> dict[str, str]:
        """Mark a member failed (root only)."""
        return {"failed": member}

    def typed(
        call: Call,
        *,
        name: str,
        count: int,
        ratio: float = 0.5,
        flag: bool = False,
        paths: list[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Echo parameters of every JSON type."""
        return {"name": name, "count": count, "ratio": ratio, "flag": flag, "paths": paths}

    def crash(call: Call) -> None:
        """Raise an unexpected exception."""
        raise ZeroDivisionError("deliberate")

    def lost(call: Call) -> None:
        """Raise a RaiddError with its exit code."""
        raise IntegrityError("stripe 7 lost beyond the fault tolerance")

    def unserializable(call: Call) -> object:
        """Return a value JSON cannot encode."""
        return {"value": object()}

    def huge(call: Call) -> str:
        """Return a result over the 4 MiB line limit."""
        return "x" * (5 * 1024 * 1024)

    def bad_frame(call: Call) -> None:
        """Emit a frame whose params reuse a frame key."""
        call.emit("progress", {"seq": 99})

    def blob(call: Call, *, size: int) -> dict[str, int]:
        """Stream `size` bytes of a repeating pattern as one file."""
        pattern = bytes(range(256))
        content = (pattern * (size // 256 + 1))[:size]
        pieces = [(start, content[start : start + 10_000]) for start in range(0, size, 10_000)]
        sent = call.send_file(b"dir/blob.bin", pieces, size=size, mode=0o640)
        return {"files": 1, "bytes": sent}

    def sparse(call: Call, *, lose: bool = False) -> dict[str, int]:
        """Stream a 3 MiB file with two data runs, or end it as lost after the first."""
        pieces = [(0, b"a" * 1000), (1 << 20, b"b" * 70_000)]

        def content() -> Any:
            yield pieces[0]
            if lose:
                raise IntegrityError("chunk 0123 lost beyond the fault tolerance")
            yield pieces[1]

        try:
            sent = call.send_file(b"sparse.img", content(), size=3 << 20, mode=0o600)
        except IntegrityError as error:
            call.emit("file_lost", {"error": str(error)})
            sent = 0
        call.emit("dir", {"path": "after", "mode": 0o755})
        return {"bytes": sent}

    def sleep_job(call: Call, *, steps: int = 100, step_seconds: float = 0.01) -> dict[str, int]:
        """Start a job that sleeps in steps, reporting progress."""

        def work(job: Any) -> dict[str, int]:
            for step in range(steps):
                job.check_cancelled()
                time.sleep(step_seconds)
                job.progress((step + 1) / steps, step=step + 1)
            return {"steps": steps}

        return {"job": call.jobs.start("sleep", work, {"steps": steps}).id}

    registry.add("ping", ping, Access.READ)
    registry.add("status", status, Access.READ)
    registry.add("fail", fail)
    registry.add("typed", typed, Access.READ)
    registry.add("crash", crash, Access.READ)
    registry.add("lost", lost, Access.READ)
    registry.add("unserializable", unserializable, Access.READ)
    registry.add("blob", blob, Access.READ)
    registry.add("sparse", sparse, Access.READ)
    registry.add("huge", huge, Access.READ)
    registry.add("bad_frame", bad_frame, Access.READ)
    registry.add("sleep", sleep_job)
    return registry


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """Yield a directory under /tmp that uid 65534 can traverse."""
    path = Path(tempfile.mkdtemp(prefix="raidd-ctl-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


ServerFactory = Callable[..., ControlServer]


@pytest.fixture
def make_server(socket_dir: Path) -> Iterator[ServerFactory]:
    """Yield a factory of started servers on sockets in `socket_dir`; all are closed after."""
    servers: list[ControlServer] = []

    def factory(
        name: str = "control.sock",
        *,
        group: int | None = None,
        mode: int | None = None,
        **limits: Any,
    ) -> ControlServer:
        jobs = JobRegistry()
        defaults = {"close_grace": 1.0, "progress_interval": 0.02}
        server = ControlServer(
            socket_dir / name,
            build_registry(jobs),
            group=group,
            mode=mode,
            limits=Limits(**{**defaults, **limits}),
            jobs=jobs,
        )
        server.start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.close()
        server.jobs.shutdown(5)


def run_as(
    uid: int, gid: int, groups: list[int], function: Callable[[], Any], timeout: float = 30
) -> Any:
    """Run `function` in a forked child that dropped to uid/gid/groups; return its JSON result.

    The child touches only sockets and os calls, which is safe after a fork
    of this threaded process, and leaves through os._exit().
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_fd)
        code = 0
        try:
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
            output = json.dumps({"ok": function()})
        except BaseException:
            output = json.dumps({"exception": traceback.format_exc()})
            code = 1
        os.write(write_fd, output.encode())
        os._exit(code)
    os.close(write_fd)
    chunks = []
    deadline = time.monotonic() + timeout
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
        if time.monotonic() > deadline:
            break
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    result = json.loads(b"".join(chunks) or b"{}")
    assert "exception" not in result, result.get("exception")
    assert os.waitstatus_to_exitcode(status) == 0
    return result["ok"]


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("changing uid and group ownership needs root")


@pytest.fixture(autouse=True)
def json_logs() -> Iterator[io.StringIO]:
    """Log as the daemon does under systemd (JSON lines), into memory."""
    stream = io.StringIO()
    logsetup.configure(json=True, stream=stream)
    yield stream
    structlog.reset_defaults()
