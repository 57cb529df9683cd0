"""Fixtures for the parity tests."""

from collections.abc import Iterator

import pytest

import parity.strips


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Shrink the kernels' block size to 64 bytes so small strips span many blocks."""
    monkeypatch.setattr(parity.strips, "BLOCK_BYTES", 64)
    yield 64
