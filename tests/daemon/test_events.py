"""The event hook runs real scripts: arguments, stdin, timeouts and failures."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from raidd.events import EVENTS, EventHook


def write_script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def process_gone(pid: int, timeout: float = 5.0) -> bool:
    """Tell whether a process stops running (absent, or a zombie) within `timeout` seconds.

    A killed process takes a moment to exit on a loaded machine, so this polls.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_program_gets_name_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    program = write_script(
        tmp_path / "hook",
        f'printf "%s\\n" "$1" > {out}.arg\n'
        f'printf "%s\\n" "$RAIDD_EVENT" > {out}.env\n'
        f'printf "%s\\n" "${{NOTIFY_SOCKET:-unset}}" > {out}.notify\n'
        f"cat > {out}.json\n",
    )
    hook = EventHook(program)
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    assert hook.emit("member_failed", member="/dev/loop3", uuid="a93e", passphrase="pw")
    hook.close()
    assert Path(f"{out}.arg").read_text() == "member_failed\n"
    assert Path(f"{out}.env").read_text() == "member_failed\n"
    assert Path(f"{out}.notify").read_text() == "unset\n"
    description = json.loads(Path(f"{out}.json").read_text())
    assert description["event"] == "member_failed"
    assert description["member"] == "/dev/loop3"
    assert description["uuid"] == "a93e"
    assert description["passphrase"] == "[redacted]"
    assert description["time"].endswith("Z")
    assert description["host"]


def test_emit_does_not_wait(tmp_path: Path) -> None:
    """emit() returns while the program still blocks on a FIFO the test holds."""
    names = ["rebuild_started", "rebuild_finished"]
    for name in names:
        os.mkfifo(tmp_path / f"gate-{name}")
    program = write_script(
        tmp_path / "hook",
        f'read line < {tmp_path}/gate-$1\necho "$line" > {tmp_path}/done-$1\n',
    )
    hook = EventHook(program, timeout=60)
    for name in names:
        assert hook.emit(name, job=3)
    assert not (tmp_path / "done-rebuild_started").exists()
    for name in names:
        with open(tmp_path / f"gate-{name}", "w") as gate:
            gate.write(f"go {name}\n")
    hook.close()
    for name in names:
        assert (tmp_path / f"done-{name}").read_text() == f"go {name}\n"


def test_events_run_in_order(tmp_path: Path) -> None:
    log_file = tmp_path / "order"
    program = write_script(tmp_path / "hook", f'echo "$1" >> {log_file}\n')
    hook = EventHook(program)
    names = ["array_degraded", "rebuild_started", "rebuild_finished", "scrub_errors"]
    for name in names:
        hook.emit(name)
    hook.close()
    assert log_file.read_text().split() == names


def test_timeout_kills_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    program = write_script(
        tmp_path / "hook", f"echo $$ > {pids}\nsleep 60 &\necho $! >> {pids}\nwait\n"
    )
    # The timeout leaves a loaded machine time to start the script and write both pids.
    hook = EventHook(program, timeout=3.0)
    with capture_logs() as logs:
        assert hook.run("backups_behind", {"event": "backups_behind"}) is None
    shell_pid, sleep_pid = (int(line) for line in pids.read_text().split())
    assert process_gone(shell_pid)
    assert process_gone(sleep_pid)
    [entry] = [entry for entry in logs if entry["event"] == "event_hook_timed_out"]
    assert entry["log_level"] == "error"
    assert entry["hook_event"] == "backups_behind"
    assert entry["timeout"] == 3.0


def test_failure_logged_with_stderr(tmp_path: Path) -> None:
    program = write_script(tmp_path / "hook", "echo 'mail server down' >&2\nexit 3\n")
    hook = EventHook(program)
    with capture_logs() as logs:
        assert hook.run("array_nearly_full", {"event": "array_nearly_full"}) == 3
    [entry] = [entry for entry in logs if entry["event"] == "event_hook_failed"]
    assert entry["exit_status"] == 3
    assert entry["stderr"] == "mail server down"
    assert entry["log_level"] == "error"


def test_long_stderr_tail_kept(tmp_path: Path) -> None:
    program = write_script(
        tmp_path / "hook", "head -c 100000 /dev/zero | tr '\\0' x >&2\necho END >&2\nexit 1\n"
    )
    with capture_logs() as logs:
        assert EventHook(program).run("test", {"event": "test"}) == 1
    [entry] = [entry for entry in logs if entry["event"] == "event_hook_failed"]
    assert entry["stderr"].endswith("xxxxEND")
    assert len(entry["stderr"]) <= 2000


def test_success_logged(tmp_path: Path) -> None:
    program = write_script(tmp_path / "hook", "cat > /dev/null\n")
    with capture_logs() as logs:
        assert EventHook(program).run("test", {"event": "test"}) == 0
    assert [entry["event"] for entry in logs] == ["event_hook_done"]


def test_missing_program_logged(tmp_path: Path) -> None:
    hook = EventHook(str(tmp_path / "absent"))
    with capture_logs() as logs:
        assert hook.emit("test")
        hook.close()
    [entry] = [entry for entry in logs if entry["event"] == "event_hook_not_started"]
    assert "No such file" in entry["error"]


def test_queue_full_drops_and_logs(tmp_path: Path) -> None:
    gate = threading.Event()
    program = write_script(tmp_path / "hook", "cat > /dev/null\n")
    hook = EventHook(program, max_pending=2)
    original_run = hook.run

    def gated_run(event: str, record: dict[str, object]) -> int | None:
        gate.wait(30)
        return original_run(event, record)

    hook.run = gated_run  # type: ignore[method-assign]
    with capture_logs() as logs:
        results = [hook.emit("test", n=index) for index in range(6)]
        gate.set()
        hook.close()
    assert results[:2] == [True, True]
    assert results.count(False) >= 3
    assert hook.dropped == results.count(False)
    assert any(entry["event"] == "event_hook_queue_full" for entry in logs)


def test_no_program_is_noop() -> None:
    hook = EventHook(None)
    assert hook.emit("member_failed") is False
    hook.close()


def test_unknown_event_rejected(tmp_path: Path) -> None:
    hook = EventHook(str(tmp_path / "hook"))
    with pytest.raises(ValueError, match="unknown event 'disk_on_fire'"):
        hook.emit("disk_on_fire")
    assert "member_failed" in EVENTS
