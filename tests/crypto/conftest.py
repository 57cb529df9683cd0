"""Fixtures for the crypto tests: keys and a cheap scrypt cost."""

import pytest

import crypto

# 2^10 * 8 * 128 bytes = 1 MiB of scrypt memory, so a passphrase slot costs
# milliseconds; arrays use DEFAULT_SCRYPT (64 MiB), pinned by a test.
TEST_SCRYPT = crypto.ScryptParams(log_n=10, r=8, p=1)


@pytest.fixture
def master() -> crypto.MasterKey:
    return crypto.MasterKey.generate()


@pytest.fixture
def subkeys(master: crypto.MasterKey) -> crypto.Subkeys:
    return crypto.derive_subkeys(master)
