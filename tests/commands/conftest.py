"""Fixtures for the offline command tests: a lock directory and a CLI runner."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog

from raidd.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "lock"
    monkeypatch.setenv("RAIDD_LOCK_DIR", str(path))
    return path


@pytest.fixture(autouse=True)
def restore_structlog() -> Iterator[None]:
    """Put back the logging configuration that raidd.cli.main replaces."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def raidd(capsys: pytest.CaptureFixture[str], lock_dir: Path) -> Callable[..., Result]:
    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run
