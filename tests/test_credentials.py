"""The key file comes from the systemd credential before the configured path."""

from __future__ import annotations

from pathlib import Path

import pytest

from raidd.credentials import key_file_path
from raidd.errors import ConfigError


@pytest.fixture
def configured(tmp_path: Path) -> Path:
    path = tmp_path / "etc" / "raidd.key"
    path.parent.mkdir()
    path.write_bytes(b"configured")
    return path


@pytest.fixture
def credentials(tmp_path: Path) -> Path:
    directory = tmp_path / "credentials"
    directory.mkdir()
    (directory / "raidd.key").write_bytes(b"credential")
    return directory


def test_credential_wins(configured: Path, credentials: Path) -> None:
    found = key_file_path(configured, {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert found == credentials / "raidd.key"


def test_configured_without_credential(configured: Path) -> None:
    assert key_file_path(configured, {}) == configured


def test_configured_when_credential_absent(configured: Path, tmp_path: Path) -> None:
    """A credentials directory without raidd.key (another credential only) falls back."""
    other = tmp_path / "other-credentials"
    other.mkdir()
    assert key_file_path(configured, {"CREDENTIALS_DIRECTORY": str(other)}) == configured


def test_nothing_configured() -> None:
    with pytest.raises(ConfigError, match=r"set key_file .* LoadCredential=raidd\.key:PATH"):
        key_file_path(None, {})


def test_missing_everywhere(tmp_path: Path) -> None:
    environ = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    pattern = r"credential .*raidd\.key, \[array\] key .*gone\.key"
    with pytest.raises(ConfigError, match=pattern):
        key_file_path(tmp_path / "gone.key", environ, setting="[array] key")
