"""Arithmetic in GF(2^8) for RAID6, scalar and vectorized over numpy strips.

The field and its notation follow H. Peter Anvin, "The mathematics of
RAID-6" (2004, revised 2011):

* Elements are bytes, read as polynomials over GF(2) of degree below 8.
  Addition is XOR. Multiplication is polynomial multiplication modulo the
  irreducible polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d).
* The generator is g = 2 (the polynomial x). It is primitive: g^0 .. g^254
  are the 255 nonzero elements, so every nonzero a has a logarithm
  log_g(a) in 0..254, and a * b = g^(log a + log b mod 255).

Multiplication by g is the step every Q computation repeats. On one byte it
is a left shift, and when the shifted-out bit was set the result is
reduced by XOR with 0x1d (0x11d without its x^8 term). ``mul2_words``
performs that step on eight bytes at once in a uint64 word (SWAR, "SIMD
within a register", as Anvin's paper describes for the Linux kernel):

    high = w & 0x8080808080808080     # the bit each byte shifts out
    w    = (w ^ high) << 1            # shift every byte, so nothing crosses bytes
    w   ^= (high >> 7) * 0x1d         # reduce the bytes whose top bit was set

The integer product in the last line cannot carry between bytes because
``high >> 7`` is 0 or 1 in each byte and 0x1d < 0x100.

Multiplication by any other constant c uses a table. ``mul_table16(c)``,
built from the log/antilog tables, maps each 16-bit value (two bytes) to
the two products. ``np.take`` applies it to the strip viewed as uint16, one
lookup per two bytes, and the 128 KiB table fits in the L2 cache. Byte
order does not matter, because each byte of the index maps to the byte at
the same position of the result.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

POLYNOMIAL = 0x11D
"""The field's irreducible polynomial x^8 + x^4 + x^3 + x^2 + 1."""

GENERATOR = 2
"""The generator g; Q = sum of g^i * D_i."""

ORDER = 255
"""Multiplicative order of g: the number of nonzero elements."""

# The SWAR constants are 0-d arrays rather than numpy scalars, because numpy
# broadcasts a 0-d array about a microsecond faster than it converts a
# scalar. Q makes six such calls per data strip and block.
HIGH_BITS = np.array(0x8080808080808080, dtype=np.uint64)
REDUCTION = np.array(POLYNOMIAL & 0xFF, dtype=np.uint64)
SEVEN = np.array(7, dtype=np.uint64)

U8Array = npt.NDArray[np.uint8]
U16Array = npt.NDArray[np.uint16]
U64Array = npt.NDArray[np.uint64]


def _build_tables() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Build the antilog table (g^0 .. g^509) and the log table (log of 0 set to 0)."""
    exp = [0] * (2 * ORDER)
    log = [0] * 256
    value = 1
    for power in range(ORDER):
        exp[power] = value
        log[value] = power
        value <<= 1
        if value & 0x100:
            value ^= POLYNOMIAL
    for power in range(ORDER, 2 * ORDER):
        exp[power] = exp[power - ORDER]
    return tuple(exp), tuple(log)


EXP, LOG = _build_tables()
"""EXP[i] = g^i for 0 <= i < 510 (doubled so that EXP[log a + log b] needs no modulo);
LOG[a] = log_g(a) for a != 0 (LOG[0] is 0 and must not be used)."""

EXP_ARRAY: U8Array = np.array(EXP, dtype=np.uint8)
LOG_ARRAY: npt.NDArray[np.int16] = np.array(LOG, dtype=np.int16)


def mul(a: int, b: int) -> int:
    """Multiply two field elements.

    Args:
        a: a byte value 0..255.
        b: a byte value 0..255.

    Returns:
        The product a * b in GF(2^8).
    """
    if a == 0 or b == 0:
        return 0
    return EXP[LOG[a] + LOG[b]]


def inverse(a: int) -> int:
    """Invert a nonzero field element.

    Args:
        a: a byte value 1..255.

    Returns:
        The element b with a * b = 1.

    Raises:
        ZeroDivisionError: ``a`` is 0.
    """
    if a == 0:
        raise ZeroDivisionError("0 has no inverse in GF(2^8)")
    return EXP[(ORDER - LOG[a]) % ORDER]


def power(exponent: int) -> int:
    """Raise the generator to a power.

    Args:
        exponent: any integer; negative exponents give inverses.

    Returns:
        g^exponent.
    """
    return EXP[exponent % ORDER]


@functools.cache
def mul_row(c: int) -> U8Array:
    """Return the 256 products c * x for x = 0..255, as a read-only uint8 array."""
    row = np.zeros(256, dtype=np.uint8)
    if c:
        row[1:] = EXP_ARRAY[LOG_ARRAY[1:] + LOG[c]]
    row.flags.writeable = False
    return row


@functools.lru_cache(maxsize=64)
def mul_table16(c: int) -> U16Array:
    """Return the products of c with both bytes of every 16-bit value, read-only.

    ``mul_table16(c)[v]`` has byte j equal to c times byte j of ``v``.
    """
    row = mul_row(c).astype(np.uint16)
    table = (row[:, np.newaxis] << np.uint16(8)) | row[np.newaxis, :]
    flat: U16Array = np.ascontiguousarray(table.reshape(-1))
    flat.flags.writeable = False
    return flat


def mul2_words(words: U64Array, scratch: U64Array) -> None:
    """Multiply every byte of ``words`` by g in place (the SWAR step above).

    Args:
        words: uint64 array, changed in place.
        scratch: uint64 array of the same length, overwritten.
    """
    np.bitwise_and(words, HIGH_BITS, scratch)
    np.bitwise_xor(words, scratch, words)
    # w + w is w << 1 (no bit crosses a byte now that the top bits are clear),
    # and numpy adds faster than it shifts.
    np.add(words, words, words)
    np.right_shift(scratch, SEVEN, scratch)
    np.multiply(scratch, REDUCTION, scratch)
    np.bitwise_xor(words, scratch, words)


def mul2_words_from(source: U64Array, out: U64Array, scratch: U64Array) -> None:
    """Set ``out`` to g times every byte of ``source`` (the SWAR step, out of place).

    Args:
        source: uint64 array, read only.
        out: uint64 array of the same length, overwritten; must not overlap ``source``.
        scratch: uint64 array of the same length, overwritten.
    """
    np.bitwise_and(source, HIGH_BITS, scratch)
    np.bitwise_xor(source, scratch, out)
    np.add(out, out, out)
    np.right_shift(scratch, SEVEN, scratch)
    np.multiply(scratch, REDUCTION, scratch)
    np.bitwise_xor(out, scratch, out)


def mul2_bytes(values: U8Array) -> None:
    """Multiply every byte of a uint8 array by g in place (for tails shorter than a word)."""
    np.take(mul_row(GENERATOR), values, out=values, mode="wrap")


def mul_const(c: int, source: U8Array, out: U8Array, index_scratch: npt.NDArray[np.intp]) -> None:
    """Multiply every byte of ``source`` by the constant ``c`` into ``out``.

    Args:
        c: the constant, 0..255.
        source: uint8 array, contiguous.
        out: uint8 array of the same length, contiguous; may be ``source``.
        index_scratch: intp array, overwritten. ``np.take`` needs intp
            indices, so each run of ``len(index_scratch)`` byte pairs is
            converted into it and then looked up. A reused buffer avoids an
            allocation per call, and a short one keeps it in cache.
    """
    if c == 0:
        out.fill(0)
        return
    if c == 1:
        if out is not source:
            np.copyto(out, source)
        return
    pairs = source.size // 2
    table = mul_table16(c)
    source16 = source[: 2 * pairs].view(np.uint16)
    out16 = out[: 2 * pairs].view(np.uint16)
    step = index_scratch.size
    for start in range(0, pairs, step):
        stop = min(start + step, pairs)
        indices = index_scratch[: stop - start]
        np.copyto(indices, source16[start:stop], casting="unsafe")
        # mode="wrap" measured about 20% faster than "clip"; every index is
        # below 65536 already, so neither mode changes one.
        np.take(table, indices, out=out16[start:stop], mode="wrap")
    if source.size % 2:
        out[-1] = mul_row(c)[source[-1]]
