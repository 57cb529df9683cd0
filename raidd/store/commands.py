"""Run a root's pre_backup and post_backup commands.

Each command runs in its own session (process group) with the root as its
working directory, no standard input, and these variables added to the
environment: RAIDD_ROOT (the root's path), RAIDD_ROOT_NAME and RAIDD_PHASE
(`pre_backup` or `post_backup`). A command that exits non-zero, cannot start,
or outlives its timeout fails; on a timeout the whole process group is
killed. A failed pre_backup means that root is not committed this time.
"""

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

__all__ = ["CommandResult", "run_backup_command"]

log = structlog.get_logger(__name__)

# Only the end of the output is kept for the report: the error usually is there.
OUTPUT_TAIL = 4000


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The outcome of one command: success, exit status and the tail of its output."""

    ok: bool
    phase: str
    returncode: int | None
    output: str
    error: str | None
    seconds: float

    def describe(self) -> str:
        """Return a one-line account for reports."""
        if self.ok:
            return f"{self.phase} succeeded in {self.seconds:.1f}s"
        return f"{self.phase} failed: {self.error}"


def run_backup_command(
    command: Sequence[str], root: Path, root_name: str, phase: str, timeout: float
) -> CommandResult:
    """Run one pre_backup or post_backup command and report how it went.

    Args:
        command: program and arguments (a shell string arrives as /bin/sh -c).
        root: the watched root; also the working directory.
        root_name: the root's name in the catalog.
        phase: "pre_backup" or "post_backup", for the environment and messages.
        timeout: seconds before the command's process group is killed.

    Returns:
        The result; this function does not raise for a failing command.
    """
    environment = dict(os.environ)
    environment.update(RAIDD_ROOT=os.fspath(root), RAIDD_ROOT_NAME=root_name, RAIDD_PHASE=phase)
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            list(command),
            cwd=root,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as error:
        reason = f"cannot start {command[0]!r}: {error.strerror}"
        return _failed(root_name, CommandResult(False, phase, None, "", reason, 0.0))
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        output, _ = process.communicate()
        reason = (
            f"timed out after {timeout:g}s and was killed (raise watch.command_timeout "
            "if it needs longer)"
        )
        seconds = time.monotonic() - started
        return _failed(
            root_name,
            CommandResult(False, phase, process.returncode, _tail(output), reason, seconds),
        )
    seconds = time.monotonic() - started
    if process.returncode != 0:
        reason = _exit_reason(process.returncode, _tail(output))
        return _failed(
            root_name,
            CommandResult(False, phase, process.returncode, _tail(output), reason, seconds),
        )
    log.info("backup_command_done", root=root_name, phase=phase, seconds=round(seconds, 3))
    return CommandResult(True, phase, 0, _tail(output), None, seconds)


def _failed(root_name: str, result: CommandResult) -> CommandResult:
    log.warning("backup_command_failed", root=root_name, phase=result.phase, error=result.error)
    return result


def _exit_reason(returncode: int, output: str) -> str:
    """Describe a non-zero exit: the status or signal, then the output's last line."""
    reason = f"exit status {returncode}"
    if returncode < 0:
        reason = f"killed by signal {-returncode}"
    last_line = output.strip().splitlines()[-1:]
    if last_line and last_line[0]:
        reason += f": {last_line[0]}"
    return reason


def _tail(output: bytes | None) -> str:
    if not output:
        return ""
    return output[-OUTPUT_TAIL:].decode("utf-8", "replace")


def _kill_group(process: "subprocess.Popen[bytes]") -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        # The group already exited between the timeout and the kill.
        log.info("backup_command_exited_before_kill", pid=process.pid)
