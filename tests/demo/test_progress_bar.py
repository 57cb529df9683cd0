"""raidctl's progress bar on a terminal, as the demo's replace and scrub steps draw it."""

from __future__ import annotations

import argparse
import io
import itertools
from typing import Any

from raidd.control.stream import Frame
from raidd.ctl.common import Context, follow_job, progress_line


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class FollowingClient:
    """A client that replays a job's progress frames, as job.progress with follow sends them."""

    def __init__(self, frames: list[dict[str, Any]], final: dict[str, Any]) -> None:
        self.frames = frames
        self.final = final
        self.timeout: float | None = 30.0

    def call(self, method: str, params: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        assert method == "job.progress"
        assert params == {"job": 7, "follow": True}
        for seq, job in enumerate(self.frames):
            kwargs["on_frame"](Frame(request=1, seq=seq, kind="progress", params={"job": job}))
        return self.final


def job(done: float, eta: float | None, state: str = "running") -> dict[str, Any]:
    detail = {"rate_mib_s": 12.5, "eta_seconds": eta}
    return {"id": 7, "kind": "rebuild", "state": state, "done": done, "detail": detail}


def test_shorter_line_erases_longer() -> None:
    frames = [job(0.1, 3600.0), job(0.5, 65.0), job(0.9, 5.0)]
    final = {**job(1.0, None, state="done"), "result": {"errors": 0}}
    terminal = Terminal()
    args = argparse.Namespace(json=False)
    context = Context(args, FollowingClient(frames, final), out=terminal)  # type: ignore[arg-type]
    code = follow_job(context, 7)
    assert code == 0
    bar_text, summary = terminal.getvalue().split("\n")[:2]
    drawn = bar_text.split("\r")[1:]
    lines = [progress_line(frame) for frame in [*frames, final]]
    assert [line.rstrip() for line in drawn] == lines
    for previous, line in itertools.pairwise(drawn):
        assert len(line) >= len(previous.rstrip())
    assert drawn[-1] == lines[-1].ljust(len(lines[-2]))
    assert summary == "job 7 (rebuild): done, 100.0% done; 0 errors, 0 repaired"
