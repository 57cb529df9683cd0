"""Shared parts of the raidctl subcommands: the connection, output and job following."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from raidd.control.client import ControlClient, default_socket_path
from raidd.control.stream import Frame
from raidd.errors import EXIT_INTEGRITY, EXIT_OK, EXIT_WARNINGS

BAR_WIDTH = 30


@dataclass
class Context:
    """The options, the connection and the output of one raidctl run."""

    args: argparse.Namespace
    client: ControlClient
    # Looked up when the context is made, so that a replaced sys.stdout is followed.
    out: TextIO = field(default_factory=lambda: sys.stdout)

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    def call(self, method: str, params: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return self.client.call(method, params, **kwargs)

    def emit(self, result: Any, human: Callable[[Any], str]) -> None:
        """Print `result` as JSON with --json, else as `human(result)`."""
        if self.json:
            print(json.dumps(result, indent=2, sort_keys=False), file=self.out)
        else:
            text = human(result)
            if text:
                print(text, file=self.out)


def socket_path(args: argparse.Namespace) -> Path:
    socket = getattr(args, "socket", None)
    return Path(socket) if socket else default_socket_path()


def progress_line(job: dict[str, Any]) -> str:
    """Render a job record as a one-line progress bar with rate and time left."""
    done = float(job.get("done", 0.0))
    filled = int(done * BAR_WIDTH)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    detail = job.get("detail", {})
    parts = [f"{job['kind']} [{bar}] {done * 100:5.1f}%"]
    if detail.get("rate_mib_s") is not None:
        parts.append(f"{detail['rate_mib_s']:.1f} MiB/s")
    if detail.get("eta_seconds") is not None:
        parts.append(f"{_duration(float(detail['eta_seconds']))} left")
    return "  ".join(parts)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def follow_job(context: Context, job_id: int) -> int:
    """Follow a job to its end, with a progress bar on a terminal; return the exit code.

    The exit code is 0 when the job ended `done` without errors, 1 when it
    ended `done` with errors found (a scrub's) and all data readable, 3
    when it found stripes lost beyond the fault tolerance, and 2 when it
    failed or was cancelled.
    """
    terminal = context.out.isatty() and not context.json
    drawn_width = 0

    def draw(line: str) -> None:
        nonlocal drawn_width
        # Pad to the width drawn before, so that a shorter line leaves no old characters behind.
        context.out.write("\r" + line.ljust(drawn_width))
        context.out.flush()
        drawn_width = len(line)

    def on_frame(frame: Frame) -> None:
        job = frame.params.get("job")
        if terminal and isinstance(job, dict):
            draw(progress_line(job))

    context.client.timeout = None
    final = context.call("job.progress", {"job": job_id, "follow": True}, on_frame=on_frame)
    if terminal:
        draw(progress_line(final))
        context.out.write("\n")
    context.emit(final, describe_job)
    if final["state"] != "done":
        return 2
    result = final.get("result") or {}
    if not isinstance(result, dict):
        return EXIT_OK
    if result.get("lost_stripes"):
        return EXIT_INTEGRITY
    return EXIT_WARNINGS if result.get("errors") else EXIT_OK


def describe_job(job: dict[str, Any]) -> str:
    line = f"job {job['id']} ({job['kind']}): {job['state']}, {job['done'] * 100:.1f}% done"
    if job.get("error"):
        line += f": {job['error']}"
    result = job.get("result")
    if isinstance(result, dict) and "errors" in result:
        line += f"; {result['errors']} errors, {result.get('repaired', 0)} repaired"
    for lost in result.get("lost") or [] if isinstance(result, dict) else []:
        members = ", ".join(
            f"role {m['role']} ({m['path'] or 'no member'}: {m['kind']})" for m in lost["members"]
        )
        line += (
            f"\nstripe {lost['stripe']} is lost: {members or 'too many strips bad'}; "
            "its data cannot be reconstructed"
        )
    return line
