"""AES-256-GCM sealing with a fresh key for every sealed block.

Sealed block, version 1 (all offsets in bytes, n = plaintext length):

    0       1   version (1)
    1       24  salt: 192 random bits from the kernel's CSPRNG
    25      n   ciphertext
    25 + n  16  GCM tag

Nonce rule: seal() never uses a caller-given nonce. It draws a new 192-bit
salt per call and derives a one-time key and nonce from it:

    PRK                 = HKDF-Extract(salt, IKM = key)
    block key | nonce   = HKDF-Expand(PRK, BLOCK_KEY_LABEL, 32 + 12)

Each derived key seals exactly one message, so a (key, nonce) pair can
repeat only if two salts repeat under one key: with q seals the chance is
below q^2 / 2^193, which is 2^-97 after 2^48 seals. No counter exists, so
nothing has to survive a crash, and a forked child draws its own salts from
the kernel.
"""

import os
from collections.abc import Callable
from typing import Any

from Crypto.Cipher import AES

from crypto import hkdf
from crypto._types import BytesLike
from crypto.errors import AuthenticationError, UnsupportedSealedVersion
from crypto.keys import KEY_SIZE, MasterKey, SecretKey

SEALED_VERSION = 1
SALT_OFFSET = 1
SALT_SIZE = 24
NONCE_SIZE = 12
TAG_SIZE = 16
HEADER_SIZE = SALT_OFFSET + SALT_SIZE
SEAL_OVERHEAD = HEADER_SIZE + TAG_SIZE
BLOCK_KEY_LABEL = b"raidd/v1/sealed-block"

# The salt source. Tests replace it to show that the nonce-reuse tests fail
# when salts repeat; nothing else should touch it.
_salt_source: Callable[[int], bytes] = os.urandom


def _check_key(key: SecretKey) -> None:
    if not isinstance(key, SecretKey):
        raise TypeError(f"key must be a SecretKey, got {type(key).__name__}")
    if isinstance(key, MasterKey):
        raise TypeError("seal with a subkey from derive_subkeys(), never with the master key")


def _block_cipher(key: SecretKey, header: bytes, associated_data: BytesLike) -> Any:
    """Return the AES-GCM cipher of one block, its header and associated data authenticated."""
    salt = header[SALT_OFFSET:HEADER_SIZE]
    prk = hkdf.extract(salt, key.view())
    okm = hkdf.expand(prk, BLOCK_KEY_LABEL, KEY_SIZE + NONCE_SIZE)
    cipher = AES.new(okm[:KEY_SIZE], AES.MODE_GCM, nonce=okm[KEY_SIZE:], mac_len=TAG_SIZE)
    cipher.update(header + bytes(associated_data))
    return cipher


def seal_with_salt(
    key: SecretKey, salt: BytesLike, plaintext: BytesLike, associated_data: BytesLike
) -> bytearray:
    """Seal with a given salt; only for known-answer tests and seal().

    Reusing a salt under one key reuses the GCM key and nonce, which breaks
    confidentiality and authenticity. Production code calls seal().

    Raises:
        TypeError: ``key`` is not a subkey.
        ValueError: ``salt`` is not 24 bytes.
    """
    _check_key(key)
    if len(salt) != SALT_SIZE:
        raise ValueError(f"salt must be {SALT_SIZE} bytes, got {len(salt)}")
    header = bytes((SEALED_VERSION,)) + bytes(salt)
    cipher = _block_cipher(key, header, associated_data)
    size = memoryview(plaintext).nbytes
    # NOTE: GCM writes straight into the result. Letting pycryptodome return
    # the ciphertext and joining it to the header cost one more allocation
    # and copy of the block, about 40 % more time per 256 KiB seal.
    sealed = bytearray(HEADER_SIZE + size + TAG_SIZE)
    sealed[:HEADER_SIZE] = header
    view = memoryview(sealed)
    cipher.encrypt(plaintext, output=view[HEADER_SIZE : HEADER_SIZE + size])
    view[HEADER_SIZE + size :] = cipher.digest()
    return sealed


def seal(key: SecretKey, plaintext: BytesLike, associated_data: BytesLike) -> bytearray:
    """Encrypt and authenticate ``plaintext``, bound to ``associated_data``.

    Nonce rule: every call draws a fresh 192-bit salt and derives a one-time
    AES-256 key and 96-bit GCM nonce from it (see the module docstring).
    Callers never manage nonces, and may seal any number of blocks under
    one key from any number of threads or processes.

    The tag covers the version byte, the salt, the ciphertext and the
    associated data. The associated data is not stored: open() must be given
    the same bytes. raidd puts the array UUID and the object id there, so a
    block moved to another object, swapped or replayed from another array
    fails to open.

    Args:
        key: a subkey from derive_subkeys() (not the master key).
        plaintext: the bytes to seal, at most 2^36 - 32 bytes (the GCM limit).
        associated_data: bytes to bind the block to; may be empty.

    Returns:
        The sealed block, SEAL_OVERHEAD bytes longer than ``plaintext``, in a
        new bytearray (no copy of the block is made to turn it into bytes).

    Raises:
        TypeError: ``key`` is not a SecretKey, or is a MasterKey.
        ValueError: ``key`` was wiped.
    """
    return seal_with_salt(key, _salt_source(SALT_SIZE), plaintext, associated_data)


def open(key: SecretKey, sealed: BytesLike, associated_data: BytesLike) -> bytearray:
    """Authenticate and decrypt a block made by seal().

    Args:
        key: the subkey the block was sealed with.
        sealed: the sealed block.
        associated_data: the same bytes given to seal().

    Returns:
        The plaintext in a new bytearray. Nothing is returned unless the tag verifies.

    Raises:
        AuthenticationError: wrong key, different associated data, or corrupted
            bytes (including a block shorter than SEAL_OVERHEAD).
        UnsupportedSealedVersion: the version byte is unknown (also an
            AuthenticationError, because corruption looks the same).
        TypeError: ``key`` is not a SecretKey, or is a MasterKey.
        ValueError: ``key`` was wiped.
    """
    _check_key(key)
    view = memoryview(sealed)
    if view.nbytes < SEAL_OVERHEAD:
        raise AuthenticationError(
            f"sealed block is {view.nbytes} bytes, shorter than the {SEAL_OVERHEAD}-byte minimum"
        )
    if view[0] != SEALED_VERSION:
        raise UnsupportedSealedVersion("sealed block", view[0], (SEALED_VERSION,))
    cipher = _block_cipher(key, bytes(view[:HEADER_SIZE]), associated_data)
    plaintext = bytearray(view.nbytes - SEAL_OVERHEAD)
    cipher.decrypt(view[HEADER_SIZE:-TAG_SIZE], output=plaintext)
    try:
        cipher.verify(view[-TAG_SIZE:])
    except ValueError:
        plaintext[:] = bytes(len(plaintext))
        raise AuthenticationError(
            f"sealed block of {view.nbytes} bytes failed authentication: wrong key, "
            "different associated data, or corrupted bytes"
        ) from None
    return plaintext
