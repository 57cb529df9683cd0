"""The one-command demo, run end to end as `make demo` runs it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
STEPS = 10


@pytest.mark.skipif(
    os.geteuid() != 0, reason="the demo runs raidctl fail and replace, which serve root only"
)
@pytest.mark.timeout(120)
def test_demo_passes(tmp_path: Path) -> None:
    directory = tmp_path / "demo-run"
    env = {**os.environ}
    for name in ("NOTIFY_SOCKET", "CREDENTIALS_DIRECTORY", "RAIDD_SOCKET", "RAIDD_LOCK_DIR"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, str(REPOSITORY / "demo" / "run.py"), "--dir", str(directory)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"==> {STEPS}. Stop the daemon with SIGTERM" in output
    assert "FAILED" not in output
    assert "ok: raidd serve exited 0" in output
    assert "ok: the restored files match the original: all" in output
    assert "ok: raidctl audit --verify exited 0 (whole)" in output
    assert (directory / "disk4.img").exists()


def load_demo(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import demo/run.py as a module (it imports its sibling `sample` by plain name)."""
    monkeypatch.syspath_prepend(str(REPOSITORY / "demo"))
    spec = importlib.util.spec_from_file_location("demo_run", REPOSITORY / "demo" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(os.geteuid() != 0, reason="the demo's daemon serves root only")
@pytest.mark.timeout(60)
def test_demo_reports_daemon_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = load_demo(monkeypatch)
    # A key file that does not exist stops raidd serve at start, in the demo's third step.
    monkeypatch.setattr(demo, "CONFIG", demo.CONFIG.replace("raidd.key", "missing.key"))
    code = demo.main(["--dir", str(tmp_path / "demo-run")])
    output = capsys.readouterr().out
    assert code == 1, output
    assert "FAILED at step 3: raidd serve exited at start" in output
    assert "lines of" in output
    assert "daemon_start_failed" in output
    assert "Stop the daemon" not in output
