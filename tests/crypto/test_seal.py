"""seal() and open(): round trips, tampering, wrong keys and the pinned layout."""

import hmac
import struct

import pytest
from Crypto.Cipher import AES
from hypothesis import given, settings
from hypothesis import strategies as st

import crypto
from crypto import sealing as seal_module

ARRAY_A = b"array 6f1c2d7e-0000-4000-8000-00000000000a"
ARRAY_B = b"array 6f1c2d7e-0000-4000-8000-00000000000b"


def bind(array: bytes, object_id: int) -> bytes:
    """Build associated data the way raidd binds a block: array id and object id."""
    return array + struct.pack("<Q", object_id)


@pytest.mark.parametrize("size", [0, 1, 16, 4096, 1024 * 1024])
def test_round_trip(subkeys: crypto.Subkeys, size: int) -> None:
    plaintext = bytes((index * 7 + 3) % 256 for index in range(size))
    sealed = crypto.seal(subkeys.chunk, plaintext, bind(ARRAY_A, 1))
    assert isinstance(sealed, bytearray)
    assert len(sealed) == size + crypto.SEAL_OVERHEAD
    opened = crypto.open(subkeys.chunk, sealed, bind(ARRAY_A, 1))
    assert isinstance(opened, bytearray)
    assert opened == plaintext
    if size >= 16:
        assert plaintext[:16] not in sealed


def test_round_trip_buffer_types(subkeys: crypto.Subkeys) -> None:
    """seal and open accept bytearray and memoryview for data and associated data."""
    plaintext = bytearray(b"x" * 100)
    sealed = crypto.seal(subkeys.chunk, memoryview(plaintext), bytearray(b"ad"))
    assert (
        crypto.open(subkeys.chunk, memoryview(bytearray(sealed)), memoryview(b"ad")) == plaintext
    )


def test_overhead_is_constant() -> None:
    assert crypto.SEAL_OVERHEAD == 41


def test_any_flipped_byte_fails(subkeys: crypto.Subkeys) -> None:
    plaintext = bytes(range(64))
    associated_data = bind(ARRAY_A, 7)
    sealed = crypto.seal(subkeys.chunk, plaintext, associated_data)
    for position in range(len(sealed)):
        for mask in (0x01, 0x80):
            damaged = bytearray(sealed)
            damaged[position] ^= mask
            with pytest.raises(crypto.AuthenticationError):
                crypto.open(subkeys.chunk, damaged, associated_data)


def test_flipped_associated_data_fails(subkeys: crypto.Subkeys) -> None:
    associated_data = bind(ARRAY_A, 7)
    sealed = crypto.seal(subkeys.chunk, b"payload", associated_data)
    for position in range(len(associated_data)):
        damaged = bytearray(associated_data)
        damaged[position] ^= 0x01
        with pytest.raises(crypto.AuthenticationError, match="failed authentication"):
            crypto.open(subkeys.chunk, sealed, damaged)


@pytest.mark.parametrize("change", ["truncate", "extend", "drop-first"])
def test_length_change_fails(subkeys: crypto.Subkeys, change: str) -> None:
    sealed = crypto.seal(subkeys.chunk, b"payload" * 10, b"ad")
    damaged = {
        "truncate": sealed[:-1],
        "extend": sealed + b"\x00",
        "drop-first": sealed[1:],
    }[change]
    with pytest.raises(crypto.AuthenticationError):
        crypto.open(subkeys.chunk, damaged, b"ad")


def test_short_block_fails(subkeys: crypto.Subkeys) -> None:
    with pytest.raises(crypto.AuthenticationError, match="shorter than the 41-byte minimum"):
        crypto.open(subkeys.chunk, bytes(40), b"")


def test_unknown_version_fails(subkeys: crypto.Subkeys) -> None:
    sealed = bytearray(crypto.seal(subkeys.chunk, b"payload", b"ad"))
    sealed[0] = 2
    with pytest.raises(crypto.UnsupportedSealedVersion, match="version 2") as caught:
        crypto.open(subkeys.chunk, sealed, b"ad")
    assert isinstance(caught.value, crypto.AuthenticationError)
    assert caught.value.found == 2
    assert caught.value.supported == (1,)


def test_wrong_key_fails(subkeys: crypto.Subkeys) -> None:
    sealed = crypto.seal(subkeys.chunk, b"payload", b"ad")
    with pytest.raises(crypto.AuthenticationError):
        crypto.open(subkeys.metadata, sealed, b"ad")
    other_array = crypto.derive_subkeys(crypto.MasterKey.generate())
    with pytest.raises(crypto.AuthenticationError):
        crypto.open(other_array.chunk, sealed, b"ad")


def test_block_from_other_array_fails(subkeys: crypto.Subkeys) -> None:
    """A block replayed into another array id, or moved to another object id, fails."""
    sealed = crypto.seal(subkeys.chunk, b"payload", bind(ARRAY_A, 5))
    assert crypto.open(subkeys.chunk, sealed, bind(ARRAY_A, 5)) == b"payload"
    with pytest.raises(crypto.AuthenticationError):
        crypto.open(subkeys.chunk, sealed, bind(ARRAY_B, 5))
    with pytest.raises(crypto.AuthenticationError):
        crypto.open(subkeys.chunk, sealed, bind(ARRAY_A, 6))


def test_swapped_blocks_fail(subkeys: crypto.Subkeys) -> None:
    first = crypto.seal(subkeys.chunk, b"first", bind(ARRAY_A, 1))
    second = crypto.seal(subkeys.chunk, b"second", bind(ARRAY_A, 2))
    with pytest.raises(crypto.AuthenticationError):
        crypto.open(subkeys.chunk, second, bind(ARRAY_A, 1))
    with pytest.raises(crypto.AuthenticationError):
        crypto.open(subkeys.chunk, first, bind(ARRAY_A, 2))


def test_master_key_rejected(master: crypto.MasterKey) -> None:
    with pytest.raises(TypeError, match="never with the master key"):
        crypto.seal(master, b"payload", b"")
    with pytest.raises(TypeError, match="never with the master key"):
        crypto.open(master, bytes(64), b"")


@pytest.mark.parametrize("key", [bytes(32), bytearray(32), None])
def test_raw_key_rejected(key: object) -> None:
    with pytest.raises(TypeError, match="key must be a SecretKey"):
        crypto.seal(key, b"payload", b"")  # type: ignore[arg-type]


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_wrong_key_length_raises(length: int) -> None:
    with pytest.raises(ValueError, match=f"a key is 32 bytes, got {length}"):
        crypto.SecretKey(bytearray(length))


@pytest.mark.parametrize("length", [0, 12, 23, 25, 32])
def test_wrong_salt_length_raises(subkeys: crypto.Subkeys, length: int) -> None:
    with pytest.raises(ValueError, match=f"salt must be 24 bytes, got {length}"):
        seal_module.seal_with_salt(subkeys.chunk, bytes(length), b"payload", b"")


def test_wiped_key_raises(subkeys: crypto.Subkeys) -> None:
    subkeys.chunk.wipe()
    with pytest.raises(ValueError, match="was wiped"):
        crypto.seal(subkeys.chunk, b"payload", b"")


# Layout pin: a fixed key, salt, plaintext and associated data give these
# exact bytes. Any change to the layout, labels or derivation changes them
# and needs a new sealed-block version.
PIN_KEY = bytes(range(32))
PIN_SALT = bytes(range(0x40, 0x58))
PIN_PLAINTEXT = b"raidd sealed block layout pin"
PIN_ASSOCIATED_DATA = b"array-uuid|object-id"


def documented_seal(key: bytes, salt: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """Seal following docs/FORMAT.md alone, with the standard library and pycryptodome."""
    prk = hmac.digest(salt, key, "sha256")
    label = b"raidd/v1/sealed-block"
    first = hmac.digest(prk, label + b"\x01", "sha256")
    second = hmac.digest(prk, first + label + b"\x02", "sha256")
    block_key, nonce = first, second[:12]
    header = b"\x01" + salt
    cipher = AES.new(block_key, AES.MODE_GCM, nonce=nonce, mac_len=16)
    cipher.update(header + associated_data)
    ciphertext, tag = cipher.encrypt_and_digest(plaintext)
    return header + ciphertext + tag


def test_layout_matches_format_document() -> None:
    key = crypto.SecretKey.from_buffer(PIN_KEY)
    sealed = seal_module.seal_with_salt(key, PIN_SALT, PIN_PLAINTEXT, PIN_ASSOCIATED_DATA)
    assert sealed == documented_seal(PIN_KEY, PIN_SALT, PIN_PLAINTEXT, PIN_ASSOCIATED_DATA)
    size = len(PIN_PLAINTEXT)
    assert sealed[0] == 1  # offset 0, 1 byte: version
    assert sealed[1:25] == PIN_SALT  # offset 1, 24 bytes: salt
    assert len(sealed[25 : 25 + size]) == size  # offset 25, n bytes: ciphertext
    assert len(sealed[25 + size :]) == 16  # offset 25 + n, 16 bytes: tag
    assert seal_module.HEADER_SIZE == 25
    assert seal_module.SALT_SIZE == 24
    assert seal_module.TAG_SIZE == 16
    assert crypto.open(key, sealed, PIN_ASSOCIATED_DATA) == PIN_PLAINTEXT


PINNED_SEALED_HEX = (
    "01"  # version
    "404142434445464748494a4b4c4d4e4f5051525354555657"  # salt
    "02db0a6993fad09f74896d34903fdfbf56b24f150b691f8b22a7a909c3"  # ciphertext
    "6106a5290b91cf208295f02117bc6aeb"  # tag
)


def test_layout_pinned_bytes() -> None:
    key = crypto.SecretKey.from_buffer(PIN_KEY)
    sealed = seal_module.seal_with_salt(key, PIN_SALT, PIN_PLAINTEXT, PIN_ASSOCIATED_DATA)
    assert sealed.hex() == PINNED_SEALED_HEX


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    plaintext=st.binary(max_size=600),
    associated_data=st.binary(max_size=80),
    flip=st.integers(min_value=0),
)
def test_property_round_trip_and_flip(plaintext: bytes, associated_data: bytes, flip: int) -> None:
    """Any plaintext and associated data round-trip, and any one flipped bit fails.

    derandomize=True makes the examples the same on every run.
    """
    key = crypto.SecretKey.from_buffer(PIN_KEY)
    sealed = crypto.seal(key, plaintext, associated_data)
    assert crypto.open(key, sealed, associated_data) == plaintext
    damaged = bytearray(sealed)
    position = flip % (len(damaged) * 8)
    damaged[position // 8] ^= 1 << (position % 8)
    with pytest.raises(crypto.AuthenticationError):
        crypto.open(key, damaged, associated_data)
