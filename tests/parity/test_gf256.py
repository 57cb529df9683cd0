"""GF(2^8) kernels compared with the reference's shift-and-add arithmetic."""

import numpy as np
import pytest

from parity import gf256, reference


def test_mul_table_matches_shift_and_add() -> None:
    for a in range(256):
        expected = bytes(reference.gf_mul(a, b) for b in range(256))
        assert gf256.mul_row(a).tobytes() == expected, a
        assert all(gf256.mul(a, b) == expected[b] for b in range(256)), a


def test_inverse_and_power() -> None:
    for a in range(1, 256):
        assert gf256.mul(a, gf256.inverse(a)) == 1
    assert [gf256.power(i) for i in range(20)] == [reference.gf_pow(i) for i in range(20)]
    assert gf256.power(-1) == reference.gf_inv(2)
    assert gf256.power(255) == 1


def test_inverse_of_zero_raises() -> None:
    with pytest.raises(ZeroDivisionError, match="0 has no inverse"):
        gf256.inverse(0)


def test_mul2_words_every_byte_value() -> None:
    """The SWAR step doubles each byte of a word on its own, for all 256 values."""
    values = np.arange(256, dtype=np.uint8)
    # Shift each 8-byte window by one so every value sits in every byte position.
    block = np.concatenate([np.roll(values, shift) for shift in range(8)])
    words = block.copy().view(np.uint64)
    gf256.mul2_words(words, np.empty_like(words))
    assert words.view(np.uint8).tobytes() == reference.scale(2, block.tobytes())


def test_mul2_bytes() -> None:
    values = np.arange(256, dtype=np.uint8)
    gf256.mul2_bytes(values)
    assert values.tobytes() == reference.scale(2, bytes(range(256)))


@pytest.mark.parametrize("size", [0, 1, 2, 255, 4096, 4097])
def test_mul_const_every_constant(size: int) -> None:
    rng = np.random.default_rng(size)
    source = rng.integers(0, 256, size, dtype=np.uint8)
    scratch = np.empty(size // 2 + 1, dtype=np.intp)
    for c in range(256):
        out = np.empty_like(source)
        gf256.mul_const(c, source, out, scratch)
        assert out.tobytes() == reference.scale(c, source.tobytes()), c


def test_mul_const_in_place() -> None:
    source = np.arange(256, dtype=np.uint8)
    gf256.mul_const(0x8E, source, source, np.empty(128, dtype=np.intp))
    assert source.tobytes() == reference.scale(0x8E, bytes(range(256)))


def test_mul_const_in_runs_of_the_index_buffer() -> None:
    """A short index buffer makes mul_const convert and look up in several runs."""
    source = np.random.default_rng(5).integers(0, 256, 1001, dtype=np.uint8)
    out = np.empty_like(source)
    gf256.mul_const(0x53, source, out, np.empty(7, dtype=np.intp))
    assert out.tobytes() == reference.scale(0x53, source.tobytes())
