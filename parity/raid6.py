"""RAID6 syndromes P and Q, and recovery of any two lost strips of a stripe.

The math is that of H. Peter Anvin, "The mathematics of RAID-6" (see
``parity.gf256`` for the field: GF(2^8) modulo 0x11d, generator g = 2).
For k data strips D_0 .. D_{k-1}, bytewise:

    P = D_0 + D_1 + ... + D_{k-1}
    Q = g^0 * D_0 + g^1 * D_1 + ... + g^(k-1) * D_{k-1}

where + is XOR. This is the Q of Linux md, ISA-L's ``pq_gen`` and SnapRAID.
Q is computed with Horner's rule, so the only multiplication is by g (the
SWAR step on uint64 words):

    Q = ((D_{k-1} * g + D_{k-2}) * g + ... ) * g + D_0

Recovery, with the syndromes of the surviving data strips written
P_s = sum of D_i and Q_s = sum of g^i * D_i over the present i:

* one data strip x and anything but P lost: D_x = P + P_s.
* data strip x and P lost: Q + Q_s = g^x * D_x, so D_x = g^(-x) * (Q + Q_s).
* data strips x < y lost: with dP = P + P_s = D_x + D_y and
  dQ = Q + Q_s = g^x * D_x + g^y * D_y,

      dQ + g^x * dP = (g^x + g^y) * D_y
      D_y = (g^x + g^y)^(-1) * (dQ + g^x * dP)
      D_x = dP + D_y

  This is Anvin's two-failure case solved for D_y first. The term
  Q_s + g^x * dP is one Horner pass over the surviving strips with dP put in
  place of D_x and zero in place of D_y, so the recovery costs one encode
  plus one multiplication by a constant.
* P and/or Q lost with all data present: encode them again.

Locating a single corrupted strip (``locate_corruption``): with the stored
P, Q and the data as read, the syndromes dP = P + P(D) and dQ = Q + Q(D)
are zero where nothing is wrong. If only data strip z is wrong, by E,
then dP = E and dQ = g^z * E at every byte where E is nonzero, so
z = log_g(dQ / dP) = log dQ - log dP (mod 255) is the same at every such
byte and below k. An error in P alone gives dP != 0 = dQ, an error in Q
alone dQ != 0 = dP. Any other pattern means more than one strip is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from parity import gf256
from parity.errors import GeometryError
from parity.geometry import MAX_RAID6_DATA_STRIPS
from parity.raid5 import xor_into
from parity.strips import (
    Buffer,
    Doubler,
    U8Array,
    U64Array,
    as_strips,
    blocks,
    index_scratch,
    output_strip,
    scratch_words,
)


def check_data_count(count: int) -> None:
    """Raise GeometryError unless 1 <= count <= 255 data strips."""
    if not 1 <= count <= MAX_RAID6_DATA_STRIPS:
        raise GeometryError(f"RAID6 needs 1 to {MAX_RAID6_DATA_STRIPS} data strips; got {count}")


def horner(out: U8Array, terms: Sequence[U8Array | None], scratch: U64Array) -> None:
    """Set ``out`` to the sum of g^i * terms[i] (None terms are zero) by Horner's rule.

    Q = (..((T_top * g + T_{top-1}) * g + ..) * g + T_0, starting from the
    highest present term, so only multiplications by g are needed.
    """
    present = [i for i, term in enumerate(terms) if term is not None]
    if not present:
        out.fill(0)
        return
    top = present[-1]
    top_term = terms[top]
    assert top_term is not None
    if top == 0:
        np.copyto(out, top_term)
        return
    double = Doubler(out, scratch)
    double.assign_doubled(top_term)
    for i in range(top - 1, -1, -1):
        if i < top - 1:
            double()
        term = terms[i]
        if term is not None:
            np.bitwise_xor(out, term, out)


def pq_block(data: Sequence[U8Array], p: U8Array, q: U8Array, scratch: U64Array) -> None:
    """Set ``p`` and ``q`` to the P and Q of one block of the data strips.

    One loop over the strips from the highest index down: P accumulates by
    XOR, Q by Horner's rule, so each data block is read while it is in cache.
    """
    top = len(data) - 1
    if top == 0:
        np.copyto(q, data[0])
        np.copyto(p, data[0])
        return
    xor = np.bitwise_xor
    xor(data[top], data[top - 1], p)
    double = Doubler(q, scratch)
    double.assign_doubled(data[top])
    xor(q, data[top - 1], q)
    for i in range(top - 2, -1, -1):
        double()
        xor(q, data[i], q)
        xor(p, data[i], p)


def encode_pq(
    data: Sequence[Buffer], p_out: U8Array | None = None, q_out: U8Array | None = None
) -> tuple[U8Array, U8Array]:
    """Compute the P and Q strips of one RAID6 stripe.

    Args:
        data: the stripe's data strips in logical order (1 to 255), all of one size.
        p_out: array to write P into (1-D uint8, the strip size, not overlapping
            any data strip); None allocates one.
        q_out: array to write Q into, likewise.

    Returns:
        (P, Q), as ``p_out`` and ``q_out`` when given.

    Raises:
        GeometryError: no data strips or more than 255, strips of different
            sizes, or an output of the wrong size.
        TypeError: a strip or an output is not a supported buffer.
    """
    check_data_count(len(data))
    strips = as_strips(data, "data strip")
    size = strips[0].size
    p = output_strip(p_out, size, "p_out")
    q = output_strip(q_out, size, "q_out")
    scratch = scratch_words(size)
    k = len(strips)
    for block in blocks([*strips, p, q], size):
        p_block, q_block = block[k], block[k + 1]
        assert p_block is not None and q_block is not None
        pq_block([strip for strip in block[:k] if strip is not None], p_block, q_block, scratch)
    return p, q


def recover_data_from_q(
    data: Sequence[U8Array | None], q: U8Array, x: int, out: U8Array
) -> U8Array:
    """Rebuild data strip ``x`` from Q and the other data strips (P is lost).

    Q + Q_s = g^x * D_x, where Q_s sums g^i * D_i over the present i, so
    D_x = g^(-x) * (Q + Q_s).
    """
    factor = gf256.power(-x)
    scratch = scratch_words(out.size)
    indices = index_scratch(out.size)
    for block in blocks([*data, q, out], out.size):
        *data_blocks, q_block, out_block = block
        assert q_block is not None and out_block is not None
        horner(out_block, data_blocks, scratch)
        np.bitwise_xor(out_block, q_block, out=out_block)
        gf256.mul_const(factor, out_block, out_block, indices)
    return out


def recover_two_data(
    data: Sequence[U8Array | None],
    p: U8Array,
    q: U8Array,
    x: int,
    y: int,
    x_out: U8Array,
    y_out: U8Array,
) -> None:
    """Rebuild data strips ``x < y`` from P, Q and the other data strips.

    dP = P + P_s = D_x + D_y and dQ = Q + Q_s = g^x * D_x + g^y * D_y, so
    R = dQ + g^x * dP = (g^x + g^y) * D_y. R is one Horner pass with dP in
    place of D_x and zero in place of D_y, plus Q. Then
    D_y = (g^x + g^y)^(-1) * R and D_x = dP + D_y.
    """
    factor = gf256.inverse(gf256.power(x) ^ gf256.power(y))
    scratch = scratch_words(p.size)
    indices = index_scratch(p.size)
    for block in blocks([*data, p, q, x_out, y_out], p.size):
        *data_blocks, p_block, q_block, d_p, r = block
        assert p_block is not None and q_block is not None
        assert d_p is not None and r is not None
        two_data_syndromes(data_blocks, p_block, x, y, d_p, r, scratch)
        np.bitwise_xor(r, q_block, r)
        gf256.mul_const(factor, r, r, indices)
        np.bitwise_xor(d_p, r, d_p)


def two_data_syndromes(
    data: Sequence[U8Array | None],
    p: U8Array,
    x: int,
    y: int,
    d_p: U8Array,
    r: U8Array,
    scratch: U64Array,
) -> None:
    """Set ``d_p`` to dP = P + P_s and ``r`` to Q_s + g^x * dP, for one block.

    This is ``horner`` over the data with dP in place of D_x and zero in place
    of D_y, and dP is built in the same descending loop. Each strip above x is
    XORed into dP right after it is XORed into ``r``, while it is still in
    cache. The strips below x (all present, as y > x) and P start dP first.
    """
    low = [p, *(strip for strip in data[:x] if strip is not None)]
    xor = np.bitwise_xor
    d_p_started = len(low) > 1
    if d_p_started:
        xor_into(d_p, low)

    def add_to_d_p(strip: U8Array) -> None:
        nonlocal d_p_started
        if d_p_started:
            xor(d_p, strip, d_p)
        else:
            xor(low[0], strip, d_p)
            d_p_started = True

    double = Doubler(r, scratch)
    pending: U8Array | None = None
    started = False
    for i in range(len(data) - 1, -1, -1):
        term: U8Array | None
        if i == y:
            term = None
        elif i == x:
            if not d_p_started:
                np.copyto(d_p, low[0])
                d_p_started = True
            term = d_p
        else:
            term = data[i]
        if not started:
            # Horner starts at the highest nonzero term, which waits in
            # `pending` so that the first doubling can read it in place.
            if term is not None:
                pending = term
                started = True
                if i > x:
                    add_to_d_p(term)
            continue
        if pending is not None:
            double.assign_doubled(pending)
            pending = None
        else:
            double()
        if term is not None:
            xor(r, term, r)
            if i > x:
                add_to_d_p(term)
    if pending is not None:
        np.copyto(r, pending)


def syndromes(data: Sequence[U8Array], p: U8Array, q: U8Array) -> tuple[U8Array, U8Array]:
    """Return dP = P + P(D) and dQ = Q + Q(D): zero where the stripe is consistent."""
    d_p, d_q = encode_pq(data)
    np.bitwise_xor(d_p, p, out=d_p)
    np.bitwise_xor(d_q, q, out=d_q)
    return d_p, d_q


def locate_corruption(d_p: U8Array, d_q: U8Array, k: int) -> int | None:
    """Find the one strip that explains nonzero syndromes, if one does.

    Args:
        d_p: P syndrome, not all zero together with ``d_q``.
        d_q: Q syndrome.
        k: number of data strips.

    Returns:
        The logical index of the corrupted strip (0..k-1 data, k for P, k + 1
        for Q), or None when no single strip explains the syndromes.

    NOTE: errors in two strips can mimic an error in a third. D_a off by E
    together with P off by (g^(a-z) + 1) * E gives the same syndromes as D_z
    off by g^(a-z) * E, and is reported as strip z. Independent damage to more
    than a few bytes matches such a pattern at every byte only by chance.
    """
    p_bad = d_p != 0
    q_bad = d_q != 0
    if not q_bad.any():
        return k
    if not p_bad.any():
        return k + 1
    if not np.array_equal(p_bad, q_bad):
        return None
    log_p = gf256.LOG_ARRAY[d_p[p_bad]]
    log_q = gf256.LOG_ARRAY[d_q[q_bad]]
    z = (log_q - log_p) % gf256.ORDER
    first = int(z[0])
    if first < k and bool((z == first).all()):
        return first
    return None
