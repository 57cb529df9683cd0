"""The console scripts answer --help and --version."""

import subprocess
import sys
from pathlib import Path

import pytest

from raidd import __version__

SCRIPTS = Path(sys.executable).parent


@pytest.mark.parametrize("script", ["raidd", "raidctl"])
def test_version(script: str) -> None:
    result = subprocess.run(
        [SCRIPTS / script, "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"{script} {__version__}"


@pytest.mark.parametrize("script", ["raidd", "raidctl"])
def test_help(script: str) -> None:
    result = subprocess.run(
        [SCRIPTS / script, "--help"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith(f"usage: {script}")
