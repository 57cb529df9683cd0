"""The public names of crypto/ work together as raidd uses them."""

import os

import crypto
from tests.crypto.conftest import TEST_SCRYPT


def test_seal_open_with_subkey(subkeys: crypto.Subkeys) -> None:
    sealed = crypto.seal(subkeys.chunk, b"content", b"array-uuid|object-id")
    assert len(sealed) == len(b"content") + crypto.SEAL_OVERHEAD
    assert crypto.open(subkeys.chunk, sealed, b"array-uuid|object-id") == b"content"


def test_keyslot_area_round_trip(master: crypto.MasterKey) -> None:
    secret = os.urandom(32)
    area = crypto.KeyslotArea.create(
        master, keyfile_secret=secret, passphrase="correct horse", scrypt=TEST_SCRYPT
    )
    data = area.to_bytes()
    assert len(data) == crypto.KEYSLOT_AREA_SIZE
    parsed = crypto.KeyslotArea.from_bytes(data)
    assert parsed.unlock_keyfile(secret) == master
    assert parsed.unlock_passphrase("correct horse") == master
    assert [info.kind for info in parsed.slots()] == ["keyfile", "passphrase"]
