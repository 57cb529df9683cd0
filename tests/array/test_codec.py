"""The strip checksum is CRC-32 as zlib computes it, which the superblock's format names."""

from __future__ import annotations

import random
import zlib

import numpy as np

from raidd.array.codec import strip_checksum


def test_strip_checksum_matches_zlib() -> None:
    rng = random.Random(7)
    for size in (0, 1, 5 * 1024, 64 * 1024 + 3):
        data = rng.randbytes(size)
        assert strip_checksum(data) == zlib.crc32(data)
        assert strip_checksum(memoryview(data)[1:]) == zlib.crc32(data[1:])
    array = np.arange(4096, dtype=np.uint64)
    assert strip_checksum(array) == zlib.crc32(array.tobytes())


def test_strip_checksum_known_value() -> None:
    """CRC-32 of b"123456789" is 0xCBF43926 (the check value of CRC-32/ISO-HDLC)."""
    assert strip_checksum(b"123456789") == 0xCBF43926
