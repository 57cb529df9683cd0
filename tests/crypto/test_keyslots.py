"""The keyslot area: life cycle, corruption, the pinned layout and the scrypt default."""

import hashlib
import hmac
import os
import struct

import pytest
from Crypto.Cipher import AES

import crypto
from crypto import hkdf
from crypto.keyslot_format import HEADER_SIZE, SLOT_SIZE
from tests.crypto.conftest import TEST_SCRYPT

SECRET = bytes(range(32)) + b"\n"  # a key file whose last byte is a newline


def slot_range(number: int) -> slice:
    return slice(HEADER_SIZE + number * SLOT_SIZE, HEADER_SIZE + (number + 1) * SLOT_SIZE)


def corrupt_slot(data: bytes, number: int, offset: int = 60) -> bytes:
    damaged = bytearray(data)
    damaged[slot_range(number).start + offset] ^= 0x01
    return bytes(damaged)


def with_checksum(slot: bytearray) -> bytearray:
    slot[472:504] = hashlib.sha256(bytes(slot[:472])).digest()
    return slot


def test_area_size_is_fixed(master: crypto.MasterKey) -> None:
    assert crypto.KEYSLOT_AREA_SIZE == 4096
    area = crypto.KeyslotArea.create(master, keyfile_secret=SECRET)
    assert len(area.to_bytes()) == 4096
    for number in range(7):
        area.add_passphrase(master, f"passphrase {number}", scrypt=TEST_SCRYPT)
    assert len(area.to_bytes()) == 4096


def test_life_cycle(master: crypto.MasterKey) -> None:
    """Add, open with each, change a passphrase, remove, and reject removing the last slot."""
    area = crypto.KeyslotArea.create(master, keyfile_secret=SECRET)
    assert area.add_passphrase(master, "first passphrase", scrypt=TEST_SCRYPT) == 1
    assert area.add_passphrase(master, "second passphrase", scrypt=TEST_SCRYPT) == 2
    area = crypto.KeyslotArea.from_bytes(area.to_bytes())
    assert area.unlock_keyfile(SECRET) == master
    assert area.unlock_passphrase("first passphrase") == master
    assert area.unlock_passphrase("second passphrase") == master
    assert [(info.number, info.kind) for info in area.slots()] == [
        (0, "keyfile"),
        (1, "passphrase"),
        (2, "passphrase"),
    ]

    area.change(1, master, passphrase="changed passphrase", scrypt=TEST_SCRYPT)
    area = crypto.KeyslotArea.from_bytes(area.to_bytes())
    assert area.unlock_passphrase("changed passphrase") == master
    with pytest.raises(crypto.NoKeyslotOpens, match="no keyslot opens with this passphrase"):
        area.unlock_passphrase("first passphrase")

    area.remove(0)
    with pytest.raises(crypto.NoKeyslotOpens, match="no keyslot opens with this key file"):
        area.unlock_keyfile(SECRET)
    area.remove(2)
    assert [info.number for info in area.slots()] == [1]
    with pytest.raises(crypto.LastKeyslot, match="keyslot 1 is the last intact keyslot"):
        area.remove(1)
    assert area.unlock_passphrase("changed passphrase") == master


def test_removed_slot_bytes_are_overwritten(master: crypto.MasterKey) -> None:
    area = crypto.KeyslotArea.create(master, keyfile_secret=SECRET)
    area.add_passphrase(master, "passphrase", scrypt=TEST_SCRYPT)
    before = area.to_bytes()
    removed_slot = before[slot_range(0)]
    area.remove(0)
    after = area.to_bytes()
    assert after[slot_range(0)] == bytes(SLOT_SIZE)
    assert removed_slot[12:104] not in after  # salt, nonce, wrapped key and tag are gone
    assert after[slot_range(1)] == before[slot_range(1)]
    assert area.add_keyfile(master, SECRET) == 0  # the freed slot is reused


def test_change_keyfile_slot_to_passphrase(master: crypto.MasterKey) -> None:
    area = crypto.KeyslotArea.create(master, keyfile_secret=SECRET)
    area.change(0, master, passphrase="now a passphrase", scrypt=TEST_SCRYPT)
    assert area.unlock_passphrase("now a passphrase") == master
    with pytest.raises(crypto.NoKeyslotOpens):
        area.unlock_keyfile(SECRET)
    with pytest.raises(ValueError, match="exactly one of keyfile_secret and passphrase"):
        area.change(0, master)


def test_corrupt_slot_others_still_open(master: crypto.MasterKey) -> None:
    area = crypto.KeyslotArea.create(
        master, keyfile_secret=SECRET, passphrase="passphrase", scrypt=TEST_SCRYPT
    )
    damaged = crypto.KeyslotArea.from_bytes(corrupt_slot(area.to_bytes(), 0))
    assert damaged.unlock_passphrase("passphrase") == master
    listed = damaged.slots()
    assert (listed[0].number, listed[0].kind, listed[0].detail) == (
        0,
        "corrupt",
        "checksum mismatch",
    )
    with pytest.raises(crypto.CorruptKeyslot, match="keyslot 0 is corrupt") as caught:
        damaged.unlock_keyfile(SECRET)
    assert caught.value.slot == 0
    damaged.remove(0)  # a corrupt slot can be removed while an intact one remains
    assert [info.kind for info in damaged.slots()] == ["passphrase"]


def test_last_intact_slot_cannot_be_removed(master: crypto.MasterKey) -> None:
    """A corrupt slot does not count as a slot that can still open the array."""
    area = crypto.KeyslotArea.create(
        master, keyfile_secret=SECRET, passphrase="passphrase", scrypt=TEST_SCRYPT
    )
    damaged = crypto.KeyslotArea.from_bytes(corrupt_slot(area.to_bytes(), 0))
    with pytest.raises(crypto.LastKeyslot, match="keyslot 1 is the last intact keyslot"):
        damaged.remove(1)


def test_corrupt_slot_survives_round_trip(master: crypto.MasterKey) -> None:
    area = crypto.KeyslotArea.create(master, keyfile_secret=SECRET)
    area.add_passphrase(master, "passphrase", scrypt=TEST_SCRYPT)
    data = corrupt_slot(area.to_bytes(), 1)
    assert crypto.KeyslotArea.from_bytes(data).to_bytes() == data


def test_foreign_slot_is_corrupt(master: crypto.MasterKey) -> None:
    other_master = crypto.MasterKey.generate()
    other_secret = os.urandom(40)
    other = crypto.KeyslotArea.create(other_master, keyfile_secret=other_secret)
    area = crypto.KeyslotArea.create(master, keyfile_secret=SECRET)
    data = bytearray(area.to_bytes())
    data[slot_range(1)] = other.to_bytes()[slot_range(0)]
    mixed = crypto.KeyslotArea.from_bytes(bytes(data))
    with pytest.raises(crypto.CorruptKeyslot, match="wraps a different master key") as caught:
        mixed.unlock_keyfile(other_secret)
    assert caught.value.slot == 1
    assert mixed.unlock_keyfile(SECRET) == master


def test_wrong_master_cannot_add(master: crypto.MasterKey) -> None:
    area = crypto.KeyslotArea.create(master, keyfile_secret=SECRET)
    with pytest.raises(crypto.MasterKeyMismatch, match="not the one the keyslot area wraps"):
        area.add_keyfile(crypto.MasterKey.generate(), os.urandom(32))
    assert len(area.slots()) == 1


def test_area_full(master: crypto.MasterKey) -> None:
    area = crypto.KeyslotArea.create(master, keyfile_secret=SECRET)
    for _ in range(7):
        area.add_keyfile(master, os.urandom(32))
    with pytest.raises(crypto.KeyslotAreaFull, match="all 8 keyslots are in use"):
        area.add_keyfile(master, os.urandom(32))


@pytest.mark.parametrize(("number", "message"), [(3, "keyslot 3 is empty"), (8, "does not exist")])
def test_remove_missing_slot(master: crypto.MasterKey, number: int, message: str) -> None:
    area = crypto.KeyslotArea.create(
        master, keyfile_secret=SECRET, passphrase="p", scrypt=TEST_SCRYPT
    )
    with pytest.raises(crypto.KeyslotNotFound, match=message):
        area.remove(number)


def test_keyfile_secret_is_exact_bytes(master: crypto.MasterKey) -> None:
    """No newline stripping or decoding: the file's bytes, every one of them, are the secret."""
    area = crypto.KeyslotArea.create(master, keyfile_secret=SECRET)
    assert area.unlock_keyfile(SECRET) == master
    for variant in (SECRET.rstrip(b"\n"), SECRET + b"\n", SECRET[:-1] + b"\r\n"):
        with pytest.raises(crypto.NoKeyslotOpens):
            area.unlock_keyfile(variant)


def test_short_keyfile_secret(master: crypto.MasterKey) -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        crypto.KeyslotArea.create(master, keyfile_secret=bytes(31))
    area = crypto.KeyslotArea.create(master, keyfile_secret=SECRET)
    with pytest.raises(crypto.NoKeyslotOpens, match="it is 31 bytes"):
        area.unlock_keyfile(bytes(31))


def test_passphrase_is_nfc_normalized(master: crypto.MasterKey) -> None:
    composed, decomposed = "caf\u00e9 cr\u00e8me", "cafe\u0301 cre\u0300me"
    area = crypto.KeyslotArea.create(master, passphrase=composed, scrypt=TEST_SCRYPT)
    assert area.unlock_passphrase(decomposed) == master


def test_empty_passphrase_rejected(master: crypto.MasterKey) -> None:
    with pytest.raises(ValueError, match="passphrase must not be empty"):
        crypto.KeyslotArea.create(master, passphrase="", scrypt=TEST_SCRYPT)


def test_messages_hide_secrets(master: crypto.MasterKey) -> None:
    area = crypto.KeyslotArea.create(master, passphrase="hunter2 secret", scrypt=TEST_SCRYPT)
    wrong_secret = bytes(range(100, 140))
    failures: list[BaseException] = []
    for attempt in (
        lambda: area.unlock_passphrase("hunter2 wrong"),
        lambda: area.unlock_keyfile(wrong_secret),
    ):
        with pytest.raises(crypto.NoKeyslotOpens) as caught:
            attempt()
        failures.append(caught.value)
    for failure in failures:
        text = str(failure) + repr(failure)
        assert "hunter2" not in text
        assert wrong_secret.hex()[:8] not in text
        assert bytes(master.view()).hex()[:8] not in text
    assert "hunter2" not in repr(area)


def test_scrypt_params_stored_per_slot(master: crypto.MasterKey) -> None:
    cheap = crypto.ScryptParams(log_n=9, r=4, p=2)
    area = crypto.KeyslotArea.create(master, passphrase="first", scrypt=TEST_SCRYPT)
    area.add_passphrase(master, "second", scrypt=cheap)
    parsed = crypto.KeyslotArea.from_bytes(area.to_bytes())
    assert [info.scrypt for info in parsed.slots()] == [TEST_SCRYPT, cheap]
    assert parsed.unlock_passphrase("second") == master


def test_edited_scrypt_params_fail(master: crypto.MasterKey) -> None:
    """The wrapping tag binds the stored parameters: lowering them, even with a
    valid checksum, makes the slot fail to open."""
    area = crypto.KeyslotArea.create(master, passphrase="passphrase", scrypt=TEST_SCRYPT)
    data = bytearray(area.to_bytes())
    slot = bytearray(data[slot_range(0)])
    slot[2] = TEST_SCRYPT.log_n - 1
    data[slot_range(0)] = with_checksum(slot)
    edited = crypto.KeyslotArea.from_bytes(bytes(data))
    assert edited.slots()[0].scrypt == crypto.ScryptParams(log_n=9, r=8, p=1)
    with pytest.raises(crypto.NoKeyslotOpens):
        edited.unlock_passphrase("passphrase")


def test_unknown_slot_kind_is_kept(master: crypto.MasterKey) -> None:
    """A slot kind from a newer build is listed as unknown, skipped and written back unchanged."""
    area = crypto.KeyslotArea.create(master, keyfile_secret=SECRET)
    data = bytearray(area.to_bytes())
    slot = bytearray(data[slot_range(0)])
    slot[0] = 9
    data[slot_range(3)] = with_checksum(slot)
    parsed = crypto.KeyslotArea.from_bytes(bytes(data))
    assert [(info.number, info.kind) for info in parsed.slots()] == [
        (0, "keyfile"),
        (3, "unknown"),
    ]
    assert parsed.unlock_keyfile(SECRET) == master
    assert parsed.to_bytes() == bytes(data)


def test_default_scrypt_costs_64_mib(master: crypto.MasterKey) -> None:
    """A passphrase slot made without parameters stores N = 2^16, r = 8, p = 1 (64 MiB)."""
    assert crypto.DEFAULT_SCRYPT.memory_bytes >= 64 * 1024 * 1024
    area = crypto.KeyslotArea.create(master, passphrase="default cost")
    data = area.to_bytes()
    log_n, r, p = data[HEADER_SIZE + 2], *struct.unpack_from("<II", data, HEADER_SIZE + 4)
    assert (log_n, r, p) == (16, 8, 1)
    assert 128 * r * (1 << log_n) == 64 * 1024 * 1024
    assert crypto.KeyslotArea.from_bytes(data).slots()[0].scrypt == crypto.DEFAULT_SCRYPT


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"log_n": 0}, "log_n must be 1 to 30"),
        ({"r": 0}, "r must be 1 to 64"),
        ({"p": 17}, "p must be 1 to 16"),
        ({"log_n": 25, "r": 64}, "more than the 4294967296-byte maximum"),
    ],
)
def test_scrypt_params_validated(params: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        crypto.ScryptParams(**params)


def test_from_bytes_rejects_wrong_size() -> None:
    with pytest.raises(crypto.CorruptKeyslotArea, match="is 4095 bytes, expected 4096"):
        crypto.KeyslotArea.from_bytes(bytes(4095))


def test_from_bytes_rejects_bad_magic(master: crypto.MasterKey) -> None:
    data = bytearray(crypto.KeyslotArea.create(master, keyfile_secret=SECRET).to_bytes())
    data[0] ^= 0x20
    with pytest.raises(crypto.CorruptKeyslotArea, match="magic"):
        crypto.KeyslotArea.from_bytes(bytes(data))


@pytest.mark.parametrize("offset", [10, 12, 14, 16, 47, 48, 63])
def test_from_bytes_rejects_bad_header_checksum(master: crypto.MasterKey, offset: int) -> None:
    data = bytearray(crypto.KeyslotArea.create(master, keyfile_secret=SECRET).to_bytes())
    data[offset] ^= 0x01
    with pytest.raises(crypto.CorruptKeyslotArea, match="fails its checksum"):
        crypto.KeyslotArea.from_bytes(bytes(data))


def test_from_bytes_rejects_newer_version(master: crypto.MasterKey) -> None:
    data = bytearray(crypto.KeyslotArea.create(master, keyfile_secret=SECRET).to_bytes())
    struct.pack_into("<H", data, 8, 2)
    with pytest.raises(crypto.UnsupportedVersion, match="keyslot area has version 2") as caught:
        crypto.KeyslotArea.from_bytes(bytes(data))
    assert caught.value.found == 2
    assert caught.value.supported == (1,)


def test_layout_matches_format_document(master: crypto.MasterKey) -> None:
    """Parse and open a serialized area using only the tables in docs/FORMAT.md."""
    area = crypto.KeyslotArea.create(master, keyfile_secret=SECRET)
    area.add_passphrase(master, "passphrase", scrypt=TEST_SCRYPT)
    data = area.to_bytes()
    magic, version, count, size, reserved = struct.unpack_from("<8sHHHH", data, 0)
    assert (magic, version, count, size, reserved) == (b"RAIDDKSA", 1, 8, 504, 0)
    verifier = hmac.digest(bytes(master.view()), b"raidd/v1/keyslot-verifier", "sha256")
    assert data[16:48] == verifier
    assert data[48:64] == hashlib.sha256(data[:48]).digest()[:16]

    slot = data[64 : 64 + 504]
    assert (slot[0], slot[1], slot[2], slot[3]) == (1, 1, 0, 0)  # key file, HKDF, no scrypt
    assert struct.unpack_from("<II", slot, 4) == (0, 0)
    salt, nonce, wrapped, tag = slot[12:44], slot[44:56], slot[56:88], slot[88:104]
    assert slot[104:472] == bytes(368)
    assert slot[472:504] == hashlib.sha256(slot[:472]).digest()
    kek = hkdf.derive(SECRET, salt, b"raidd/v1/keyslot-keyfile-kek", 32)
    cipher = AES.new(kek, AES.MODE_GCM, nonce=nonce, mac_len=16)
    cipher.update(b"raidd/v1/keyslot" + slot[:56])
    assert cipher.decrypt_and_verify(wrapped, tag) == bytes(master.view())

    passphrase_slot = data[64 + 504 : 64 + 2 * 504]
    assert (passphrase_slot[0], passphrase_slot[1], passphrase_slot[2]) == (
        2,
        2,
        TEST_SCRYPT.log_n,
    )
    assert struct.unpack_from("<II", passphrase_slot, 4) == (TEST_SCRYPT.r, TEST_SCRYPT.p)
    assert data[64 + 2 * 504 :] == bytes(6 * 504)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_from_bytes_accepts_buffers(master: crypto.MasterKey, wrap: type) -> None:
    data = crypto.KeyslotArea.create(master, keyfile_secret=SECRET).to_bytes()
    parsed = crypto.KeyslotArea.from_bytes(wrap(data))
    assert parsed.unlock_keyfile(bytearray(SECRET)) == master
    assert parsed.to_bytes() == data
