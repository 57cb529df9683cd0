"""RAID5 parity: P is the XOR of the data strips.

Following H. Peter Anvin, "The mathematics of RAID-6", with k data strips
D_0 .. D_{k-1} of a stripe, bytewise:

    P = D_0 + D_1 + ... + D_{k-1}        (+ is XOR, addition in GF(2^8))

Because XOR is its own inverse, any one missing strip of D_0 .. D_{k-1}, P
is the XOR of all the others. The kernel XORs block after block of the
strips with ``np.bitwise_xor(..., out=...)`` into the P block, so each data
strip is read once and P stays in cache while it accumulates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from parity.errors import GeometryError
from parity.strips import Buffer, U8Array, as_strips, blocks, fits_one_block, output_strip


def xor_into(out: U8Array, sources: Sequence[U8Array]) -> None:
    """Set ``out`` to the XOR of one or more ``sources`` of its length."""
    if len(sources) == 1:
        np.copyto(out, sources[0])
        return
    xor = np.bitwise_xor
    xor(sources[0], sources[1], out)
    for source in sources[2:]:
        xor(out, source, out)


def xor_strips(sources: Sequence[U8Array], out: U8Array) -> U8Array:
    """Set ``out`` to the XOR of equal-length strips, block by block, and return it."""
    if fits_one_block(out.size):
        xor_into(out, sources)
        return out
    for block in blocks([*sources, out], out.size):
        *source_blocks, out_block = block
        assert out_block is not None
        xor_into(out_block, [source for source in source_blocks if source is not None])
    return out


def encode_p(data: Sequence[Buffer], out: U8Array | None = None) -> U8Array:
    """Compute the P strip (XOR of the data strips) of one stripe.

    Args:
        data: the stripe's data strips in logical order, all of one size.
        out: array to write P into (1-D uint8, the strip size, not overlapping
            any data strip); None allocates one.

    Returns:
        P, as ``out`` when given.

    Raises:
        GeometryError: no data strips, strips of different sizes, or ``out``
            of the wrong size.
        TypeError: a strip or ``out`` is not a supported buffer.
    """
    if not data:
        raise GeometryError("encode_p needs at least 1 data strip; got 0")
    strips = as_strips(data, "data strip")
    p = output_strip(out, strips[0].size, "out")
    return xor_strips(strips, p)
