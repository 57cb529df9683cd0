"""crypto.self_test() passes on a sound build and fails when a primitive is wrong."""

import pytest

import crypto
from crypto import selftest


def test_self_test_passes() -> None:
    crypto.self_test()


def test_self_test_detects_wrong_seal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selftest, "SEALED", "02" + selftest.SEALED[2:])
    with pytest.raises(crypto.SelfTestFailed, match="crypto self-test failed: seal returned"):
        crypto.self_test()


def test_self_test_detects_wrong_hkdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selftest, "HKDF_OKM", "00" * 42)
    with pytest.raises(crypto.SelfTestFailed, match="HKDF-SHA256 returned 3cb25f25"):
        crypto.self_test()
