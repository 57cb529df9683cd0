"""The start-up self-test of parity and sealing."""

from __future__ import annotations

import numpy as np
import pytest

import parity
from raidd.daemon import selftest
from raidd.errors import IntegrityError


def test_self_tests_pass() -> None:
    selftest.run_self_tests()


def test_wrong_parity_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_encode_p(data: list[np.ndarray]) -> np.ndarray:
        return np.zeros(selftest.STRIP, dtype=np.uint8)

    monkeypatch.setattr(parity, "encode_p", broken_encode_p)
    with pytest.raises(IntegrityError, match="RAID5 P is not 0x83"):
        selftest.parity_self_test()
