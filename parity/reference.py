"""Slow, plainly written reference codec: the golden copy the tests compare with.

Pure Python over ``bytes``; it shares no code and no tables with the numpy
codecs. The math is that of H. Peter Anvin, "The mathematics of RAID-6":

* GF(2^8) with the polynomial 0x11d; ``gf_mul`` multiplies by shift and add
  (carry-less long multiplication, reducing whenever bit 8 appears).
* P = D_0 + ... + D_{k-1} and Q = g^0 * D_0 + ... + g^(k-1) * D_{k-1} with
  g = 2, each power computed by repeated multiplication.
* Two lost data strips x < y are rebuilt with Anvin's formulas as printed:

      A = g^(y-x) * (g^(y-x) + 1)^(-1)
      B = g^(-x) * (g^(y-x) + 1)^(-1)
      D_x = A * (P + P_xy) + B * (Q + Q_xy)
      D_y = (P + P_xy) + D_x

  where P_xy and Q_xy are P and Q computed with D_x = D_y = 0.
* A single corrupted RAID6 strip is located by trial, not by logarithms:
  strip j is the culprit when recomputing it from the others makes both P
  and Q consistent again.

Not part of the public API; the tests import it directly.
"""

from __future__ import annotations

import functools

POLYNOMIAL = 0x11D


def gf_mul(a: int, b: int) -> int:
    """Multiply two bytes in GF(2^8) by shift and add."""
    product = 0
    while b:
        if b & 1:
            product ^= a
        b >>= 1
        a <<= 1
        if a & 0x100:
            a ^= POLYNOMIAL
    return product


def gf_pow(exponent: int) -> int:
    """Return g^exponent for g = 2 and exponent >= 0, by repeated multiplication."""
    value = 1
    for _ in range(exponent % 255):
        value = gf_mul(value, 2)
    return value


def gf_inv(a: int) -> int:
    """Return the inverse of a nonzero byte, found by search."""
    for candidate in range(1, 256):
        if gf_mul(a, candidate) == 1:
            return candidate
    raise ZeroDivisionError("0 has no inverse in GF(2^8)")


@functools.cache
def _product_row(c: int) -> bytes:
    """Return c * x for x = 0..255 (a cache of gf_mul, for speed only)."""
    return bytes(gf_mul(c, x) for x in range(256))


def scale(c: int, strip: bytes) -> bytes:
    """Multiply every byte of a strip by c."""
    return strip.translate(_product_row(c))


def add(*strips: bytes) -> bytes:
    """XOR strips of one length together (each strip read as one big integer)."""
    total = 0
    for strip in strips:
        total ^= int.from_bytes(strip, "little")
    return total.to_bytes(len(strips[0]), "little")


def encode_p(data: list[bytes]) -> bytes:
    """Return P, the XOR of the data strips."""
    return add(*data)


def encode_q(data: list[bytes]) -> bytes:
    """Return Q = sum of g^i * D_i."""
    return add(*(scale(gf_pow(i), strip) for i, strip in enumerate(data)))


def rebuild_raid5(strips: list[bytes | None]) -> list[bytes]:
    """Fill in the one missing strip of [D_0 .. D_{k-1}, P]."""
    missing = [i for i, strip in enumerate(strips) if strip is None]
    assert len(missing) <= 1
    present = [strip for strip in strips if strip is not None]
    return [add(*present) if strip is None else strip for strip in strips]


def rebuild_raid6(strips: list[bytes | None]) -> list[bytes]:
    """Fill in up to two missing strips of [D_0 .. D_{k-1}, P, Q]."""
    k = len(strips) - 2
    size = len(next(strip for strip in strips if strip is not None))
    zero = bytes(size)
    data = list(strips[:k])
    p, q = strips[k], strips[k + 1]
    lost = [i for i in range(k) if data[i] is None]
    assert len(lost) + (p is None) + (q is None) <= 2
    with_zeros = [zero if strip is None else strip for strip in data]

    if len(lost) == 2:
        assert p is not None and q is not None
        x, y = lost
        p_xy = encode_p(with_zeros)
        q_xy = encode_q(with_zeros)
        denominator = gf_inv(gf_pow(y - x) ^ 1)
        a = gf_mul(gf_pow(y - x), denominator)
        b = gf_mul(gf_inv(gf_pow(x)), denominator)
        d_p = add(p, p_xy)
        d_x = add(scale(a, d_p), scale(b, add(q, q_xy)))
        data[x] = d_x
        data[y] = add(d_p, d_x)
    elif len(lost) == 1:
        x = lost[0]
        if p is not None:
            data[x] = add(p, encode_p(with_zeros))
        else:
            assert q is not None
            data[x] = scale(gf_inv(gf_pow(x)), add(q, encode_q(with_zeros)))

    full = [strip for strip in data if strip is not None]
    assert len(full) == k
    return [*full, encode_p(full) if p is None else p, encode_q(full) if q is None else q]


def locate_raid6(strips: list[bytes]) -> int | str | None:
    """Find a single corrupted strip of a full RAID6 stripe by trial.

    Returns:
        "ok" when P and Q match. Otherwise the index j (0..k-1 data, k for P,
        k + 1 for Q) of the only strip whose recomputation makes the stripe
        consistent, or None when no single strip does.
    """
    k = len(strips) - 2
    data = strips[:k]
    if encode_p(data) == strips[k] and encode_q(data) == strips[k + 1]:
        return "ok"
    culprits = []
    for j in range(k):
        # Rebuild D_j from P alone (Q erased too), then check the stored Q.
        trial: list[bytes | None] = list(strips)
        trial[j] = None
        trial[k + 1] = None
        if rebuild_raid6(trial)[k + 1] == strips[k + 1]:
            culprits.append(j)
    if encode_q(data) == strips[k + 1]:
        culprits.append(k)
    if encode_p(data) == strips[k]:
        culprits.append(k + 1)
    return culprits[0] if len(culprits) == 1 else None
