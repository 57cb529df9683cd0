"""HKDF with HMAC-SHA256 (RFC 5869, "HMAC-based Extract-and-Expand Key Derivation Function").

HMAC comes from the standard library's ``hmac.digest``, the one-shot form
that runs in OpenSSL, because sealing derives a key for every block and the
Python-level HMAC objects cost several times more.
"""

import hmac

from crypto._types import BytesLike

HASH_NAME = "sha256"
HASH_SIZE = 32
MAX_OUTPUT = 255 * HASH_SIZE


def extract(salt: BytesLike, ikm: BytesLike) -> bytes:
    """Compute the pseudorandom key PRK = HMAC-SHA256(salt, IKM).

    Args:
        salt: optional salt; an empty salt means HashLen zero bytes (RFC 5869, 2.2).
        ikm: the input keying material.

    Returns:
        The 32-byte PRK.
    """
    return hmac.digest(salt if len(salt) else bytes(HASH_SIZE), ikm, HASH_NAME)


def expand(prk: BytesLike, info: bytes, length: int) -> bytes:
    """Expand a PRK into ``length`` bytes of output keying material (RFC 5869, 2.3).

    Args:
        prk: a pseudorandom key of at least 32 bytes, usually from extract().
        info: the context label that separates derived keys.
        length: output size in bytes, 1 to 8160.

    Returns:
        The first ``length`` bytes of T(1) | T(2) | ...

    Raises:
        ValueError: ``length`` is out of range or ``prk`` is shorter than 32 bytes.
    """
    if not 0 < length <= MAX_OUTPUT:
        raise ValueError(f"HKDF output length must be 1 to {MAX_OUTPUT} bytes, got {length}")
    if len(prk) < HASH_SIZE:
        raise ValueError(f"HKDF PRK must be at least {HASH_SIZE} bytes, got {len(prk)}")
    blocks: list[bytes] = []
    previous = b""
    for counter in range(1, -(-length // HASH_SIZE) + 1):
        previous = hmac.digest(prk, previous + info + bytes((counter,)), HASH_NAME)
        blocks.append(previous)
    return b"".join(blocks)[:length]


def derive(ikm: BytesLike, salt: BytesLike, info: bytes, length: int) -> bytes:
    """Run HKDF-Extract and HKDF-Expand in one call.

    Args:
        ikm: the input keying material.
        salt: the extract salt (may be empty).
        info: the context label.
        length: output size in bytes, 1 to 8160.

    Returns:
        ``length`` bytes of output keying material.

    Raises:
        ValueError: ``length`` is out of range.
    """
    return expand(extract(salt, ikm), info, length)
