"""The unit files pass `systemd-analyze verify` and contain the directives the daemon relies on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"
SCRIPTS = Path(sys.executable).parent
INSTALLED = "/usr/local/bin/"


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Parse a unit file into section -> key -> values (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            current = sections.setdefault(stripped[1:-1], {})
            continue
        assert current is not None, f"{path.name}: {line!r} is outside a section"
        key, separator, value = stripped.partition("=")
        assert separator, f"{path.name}: {line!r} is not Key=Value"
        current.setdefault(key, []).append(value)
    return sections


def comments(path: Path) -> str:
    return "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))


def verify(directory: Path, *names: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    return subprocess.run(
        [tool, "verify", "--man=no", *names],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def installed_copies(tmp_path: Path) -> Path:
    """Copy the units with ExecStart= pointing at this environment's raidd and raidctl."""
    for name in ("raidd", "raidctl"):
        assert (SCRIPTS / name).exists(), f"{SCRIPTS / name} is missing; run make test"
    for unit in UNITS.glob("*.service"):
        text = unit.read_text().replace(INSTALLED, f"{SCRIPTS}/")
        (tmp_path / unit.name).write_text(text)
    shutil.copy(UNITS / "raidd-scrub.timer", tmp_path)
    shutil.copy(tmp_path / "raidd@.service", tmp_path / "raidd@crm.service")
    return tmp_path


def test_units_pass_verify(installed_copies: Path) -> None:
    names = ["raidd.service", "raidd@crm.service", "raidd-scrub.service", "raidd-scrub.timer"]
    result = verify(installed_copies, *names)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == ""


def test_verify_reports_problems(tmp_path: Path) -> None:
    """The check above can fail: verify reports an unknown key and a missing program."""
    (tmp_path / "broken.service").write_text(
        "[Service]\nExecStart=/nonexistent/raidd serve\nWatchdogSecs=30\n"
    )
    result = verify(tmp_path, "broken.service")
    assert result.returncode != 0
    assert "WatchdogSecs" in result.stderr
    assert "/nonexistent/raidd" in result.stderr


def test_service_directives() -> None:
    service = parse_unit(UNITS / "raidd.service")["Service"]
    assert service["Type"] == ["notify"]
    assert service["WatchdogSec"] == ["30s"]
    assert service["Restart"] == ["on-failure"]
    assert service["StateDirectory"] == ["raidd"]
    assert service["RuntimeDirectory"] == ["raidd"]
    assert service["ConfigurationDirectory"] == ["raidd"]
    assert service["LoadCredential"] == ["raidd.key:/etc/raidd/raidd.key"]
    assert service["RestrictAddressFamilies"] == ["AF_UNIX AF_NETLINK"]
    assert service["DevicePolicy"] == ["closed"]
    assert "block-loop rw" in service["DeviceAllow"]
    assert "PrivateDevices" not in service
    assert service["ExecStart"] == [f"{INSTALLED}raidd serve --config /etc/raidd/raidd.toml"]


def test_left_out_directives_explained() -> None:
    text = comments(UNITS / "raidd.service")
    for directive in (
        "PrivateDevices=",
        "PrivateNetwork=",
        "MemoryDenyWriteExecute=",
        "PrivateUsers=",
        "ProcSubset=",
    ):
        assert f"{directive}" in text, f"raidd.service does not say why {directive} is left out"


def test_template_instance_paths() -> None:
    service = parse_unit(UNITS / "raidd@.service")["Service"]
    [exec_start] = service["ExecStart"]
    assert "--config /etc/raidd/%i.toml" in exec_start
    assert "--socket /run/raidd/%i.sock" in exec_start
    assert "--state-dir /var/lib/raidd/%i" in exec_start
    assert service["StateDirectory"] == ["raidd/%i"]
    assert service["RuntimeDirectoryPreserve"] == ["yes"]
    assert service["LoadCredential"] == ["raidd.key:/etc/raidd/%i.key"]
    assert service["Type"] == ["notify"]


def test_template_matches_service_hardening() -> None:
    """The template differs from raidd.service only in its per-instance paths."""
    single = parse_unit(UNITS / "raidd.service")["Service"]
    template = parse_unit(UNITS / "raidd@.service")["Service"]
    per_instance = {"ExecStart", "StateDirectory", "LoadCredential", "RuntimeDirectoryPreserve"}
    for key in set(single) | set(template):
        if key not in per_instance:
            assert single.get(key) == template.get(key), key


def test_scrub_service_and_timer() -> None:
    scrub = parse_unit(UNITS / "raidd-scrub.service")
    assert scrub["Unit"]["After"] == ["raidd.service"]
    assert scrub["Service"]["ExecStart"] == [f"{INSTALLED}raidctl scrub --wait"]
    assert scrub["Service"]["Type"] == ["oneshot"]
    timer = parse_unit(UNITS / "raidd-scrub.timer")
    assert timer["Timer"]["OnCalendar"] == ["monthly"]
    assert timer["Timer"]["Persistent"] == ["true"]
    assert timer["Install"]["WantedBy"] == ["timers.target"]


def test_sysusers_group() -> None:
    lines = [
        line
        for line in (UNITS / "sysusers.d" / "raidd.conf").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines == ["g raidd -"]
