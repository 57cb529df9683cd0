"""raidctl without a daemon: option placement, exit codes, status --test and rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from raidd.ctl.common import progress_line
from raidd.ctl.status import health_exit_code, render
from raidd.raidctl import build_parser, main


def _status(state: str, behind: bool = False) -> dict:
    return {
        "array": {
            "uuid": "6f1c0000-0000-4000-8000-000000000000",
            "name": "crm",
            "level": 5,
            "state": state,
            "event": 9,
            "stripes": 100,
            "allocated_stripes": 7,
            "free_stripes": 93,
            "used_bytes": 7 * 3 * 65536,
            "size_bytes": 100 * 3 * 65536,
            "used_fraction": 0.07,
            "members": [
                {
                    "path": "/dev/loop1",
                    "uuid": "a93e0000-0000-4000-8000-000000000000",
                    "role": 1,
                    "state": "faulty",
                    "errors": {"read": 0, "write": 3, "checksum": 0},
                }
            ],
        },
        "jobs": [],
        "last_commit": {"id": 118, "time": "2026-12-04T13:20:01Z"},
        "backups": {"available": True, "behind": behind},
        "watcher": [],
    }


@pytest.mark.parametrize(
    ("state", "behind", "code"),
    [
        ("clean", False, 0),
        ("clean", True, 1),
        ("degraded", False, 1),
        ("rebuilding", False, 1),
        ("failed", False, 3),
    ],
)
def test_status_test_exit_codes(state: str, behind: bool, code: int) -> None:
    assert health_exit_code(_status(state, behind)) == code


def test_status_render_shows_members() -> None:
    text = render(_status("degraded"))
    assert "raid5, degraded, event 9" in text
    assert "faulty" in text
    assert "space: 1.3 MiB used of 18.8 MiB (7.0%); 7 stripes used, 93 free of 100" in text
    assert "/dev/loop1 (a93e0000-0000-4000-8000-000000000000)" in text
    assert "last commit: 118 at 2026-12-04T13:20:01Z" in text


def test_options_before_or_after_subcommand() -> None:
    parser = build_parser()
    before = parser.parse_args(["--json", "--socket", "/tmp/a.sock", "status", "--test"])
    after = parser.parse_args(["status", "--test", "--json", "--socket", "/tmp/a.sock"])
    for args in (before, after):
        assert args.json is True
        assert args.socket == "/tmp/a.sock"
        assert args.test is True


def test_unreachable_daemon_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--socket", str(tmp_path / "none.sock"), "status"])
    assert code == 2
    assert "is raidd running?" in capsys.readouterr().err


def test_progress_line_has_rate_and_eta() -> None:
    job = {"kind": "rebuild", "done": 0.5, "detail": {"rate_mib_s": 88.1, "eta_seconds": 75}}
    line = progress_line(job)
    assert line.startswith("rebuild [" + "#" * 15 + "-" * 15 + "]  50.0%")
    assert "88.1 MiB/s" in line
    assert "1m15s left" in line
