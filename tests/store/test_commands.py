"""pre_backup and post_backup commands: success, failure, timeout, environment."""

import os
import time
from pathlib import Path

from raidd.store.commands import run_backup_command


def test_success_sees_environment(tmp_path: Path) -> None:
    command = ("/bin/sh", "-c", 'echo "$RAIDD_ROOT_NAME $RAIDD_PHASE $RAIDD_ROOT $(pwd)"')
    result = run_backup_command(command, tmp_path, "crm", "pre_backup", timeout=10)
    assert result.ok
    assert result.returncode == 0
    assert result.output.strip() == f"crm pre_backup {tmp_path} {tmp_path}"
    assert result.error is None
    assert result.describe().startswith("pre_backup succeeded")


def test_failure_reports_status_and_last_line(tmp_path: Path) -> None:
    command = ("/bin/sh", "-c", "echo dumping; echo 'pg_dump: connection refused' >&2; exit 3")
    result = run_backup_command(command, tmp_path, "crm", "pre_backup", timeout=10)
    assert not result.ok
    assert result.returncode == 3
    assert result.error == "exit status 3: pg_dump: connection refused"
    assert "dumping" in result.output
    assert result.describe() == "pre_backup failed: exit status 3: pg_dump: connection refused"


def test_timeout_kills_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "survived"
    command = ("/bin/sh", "-c", f"(sleep 0.6; touch {marker}) & sleep 30")
    started = time.monotonic()
    result = run_backup_command(command, tmp_path, "crm", "post_backup", timeout=0.3)
    assert not result.ok
    assert result.error is not None
    assert result.error.startswith("timed out after 0.3s and was killed")
    assert time.monotonic() - started < 20
    time.sleep(0.9)
    assert not marker.exists()


def test_missing_program_reported(tmp_path: Path) -> None:
    result = run_backup_command(("/no/such/dump",), tmp_path, "crm", "pre_backup", timeout=5)
    assert not result.ok
    assert result.returncode is None
    assert result.error == "cannot start '/no/such/dump': No such file or directory"


def test_stdin_is_closed(tmp_path: Path) -> None:
    result = run_backup_command(("/bin/cat",), tmp_path, "crm", "pre_backup", timeout=5)
    assert result.ok
    assert result.output == ""


def test_signal_death_reported(tmp_path: Path) -> None:
    result = run_backup_command(
        ("/bin/sh", "-c", "kill -TERM $$"), tmp_path, "crm", "pre_backup", timeout=5
    )
    assert not result.ok
    assert result.error == f"killed by signal {15}"
    assert os.path.isdir(tmp_path)
