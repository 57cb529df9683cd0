"""Finding the key file: the systemd credential `raidd.key` first, the configured path second.

Under systemd, `LoadCredential=raidd.key:/etc/raidd/raidd.key` copies the
key into `$CREDENTIALS_DIRECTORY/raidd.key`, a file only this service can
read, on memory that is not swapped where the kernel allows. That copy is
used in preference to the key file the configuration names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from raidd.errors import ConfigError

CREDENTIAL_NAME = "raidd.key"


def key_file_path(
    configured: Path | None,
    environ: Mapping[str, str] | None = None,
    *,
    setting: str = "key_file",
) -> Path:
    """Return the key file to unlock the array with.

    Args:
        configured: the key file the configuration names, or None.
        environ: the environment; `os.environ` by default.
        setting: the configuration key that names the key file, for messages.

    Raises:
        ConfigError: neither a credential nor a configured key file
            exists; the message names each place looked at.
    """
    env = os.environ if environ is None else environ
    looked_at = []
    directory = env.get("CREDENTIALS_DIRECTORY")
    if directory:
        credential = Path(directory) / CREDENTIAL_NAME
        if credential.is_file():
            return credential
        looked_at.append(f"credential {credential}")
    if configured is not None:
        if configured.is_file():
            return configured
        looked_at.append(f"{setting} {configured}")
    if not looked_at:
        raise ConfigError(
            f"no key file: set {setting} in the configuration, or start raidd "
            f"with LoadCredential={CREDENTIAL_NAME}:PATH"
        )
    raise ConfigError(
        f"key file not found (looked at {', '.join(looked_at)}); create it or correct {setting}"
    )
