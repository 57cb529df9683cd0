"""Settings shared by the whole suite."""

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True, scope="session")
def private_lock_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep array lock files out of the host's /run/raidd; a test may still set its own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAIDD_LOCK_DIR", str(tmp_path_factory.mktemp("locks")))
        yield


@pytest.fixture(autouse=True)
def restore_log_setup() -> Iterator[None]:
    """Undo any structlog configuration a test made, such as raidctl's errors-only setup."""
    saved = structlog.get_config()
    yield
    structlog.reset_defaults()
    structlog.configure(**saved)
