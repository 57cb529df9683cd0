"""Views of caller buffers as numpy strips, and the block walk the codecs share.

A strip is a run of bytes: ``bytes``, ``bytearray``, a contiguous
``memoryview`` or a 1-D ``numpy.uint8`` array (any stride). The codecs read
strips through views, never copying them, and write only into contiguous
arrays they allocate or that the caller passes as ``out``.

Performance notes, measured on the benchmark machine (see docs/BENCHMARKS.md):

* Each numpy call costs 1 to 3 µs of overhead there, as much as XORing 16 to
  48 KiB, so kernels make few, large calls: a strip of up to ``BLOCK_BYTES``
  is processed whole, with no slicing at all.
* Longer strips are walked in blocks of ``BLOCK_BYTES`` so that the
  accumulators (P, Q and the scratch words) stay in cache while each data
  strip's block streams past once, instead of every pass going to memory.
* XOR runs on the uint8 views directly, because numpy's uint8 XOR loop is
  as fast as its uint64 one. Only the accumulators that are multiplied by
  g are also viewed as uint64 words, for the SWAR step in
  ``parity.gf256``. A tail of fewer than 8 bytes is multiplied bytewise.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from parity.errors import GeometryError
from parity.gf256 import GENERATOR, mul2_bytes, mul2_words, mul2_words_from, mul_row

UINT8 = np.dtype(np.uint8)

Buffer: TypeAlias = bytes | bytearray | memoryview | npt.NDArray[np.uint8]
"""A strip in any of the buffer types the codecs accept."""

U8Array: TypeAlias = npt.NDArray[np.uint8]
U64Array: TypeAlias = npt.NDArray[np.uint64]

BLOCK_BYTES = 256 * 1024
"""Bytes of each strip processed per kernel step; a multiple of 8."""


UINT8 = np.dtype(np.uint8)


def as_strip(buffer: Buffer, name: str) -> U8Array:
    """View a caller's buffer as a 1-D uint8 array without copying.

    Args:
        buffer: the strip.
        name: how error messages name the strip (for example ``"data strip 2"``).

    Returns:
        A uint8 view of the buffer (a strided array stays strided: the kernels
        only read input strips, which numpy does at any stride).

    Raises:
        TypeError: the buffer is not bytes-like or not a 1-D uint8 array.
    """
    if isinstance(buffer, np.ndarray):
        if buffer.dtype != UINT8 or buffer.ndim != 1:
            raise TypeError(
                f"{name} must be a 1-D numpy.uint8 array; got dtype {buffer.dtype} "
                f"with {buffer.ndim} dimensions"
            )
        return buffer
    if isinstance(buffer, bytes | bytearray):
        return np.frombuffer(buffer, dtype=np.uint8)
    if isinstance(buffer, memoryview):
        if not buffer.c_contiguous:
            raise TypeError(f"{name} must be a contiguous buffer")
        return np.frombuffer(buffer.cast("B"), dtype=np.uint8)
    raise TypeError(
        f"{name} must be bytes, bytearray, memoryview or a numpy.uint8 array; "
        f"got {type(buffer).__name__}"
    )


def as_strips(buffers: Sequence[Buffer], kind: str = "strip") -> list[U8Array]:
    """View several strips that must all have the same length.

    Args:
        buffers: the strips.
        kind: how error messages name one strip.

    Returns:
        One uint8 view per strip.

    Raises:
        TypeError: a strip is not a supported buffer.
        GeometryError: the strips differ in length.
    """
    strips: list[U8Array] = []
    for i, buffer in enumerate(buffers):
        # The common case, a 1-D uint8 array, skips the checks and the name
        # that only an error message would need, because each Python step
        # here costs as much as XORing a few hundred bytes.
        if type(buffer) is np.ndarray and buffer.dtype is UINT8 and buffer.ndim == 1:
            strips.append(buffer)
        else:
            strips.append(as_strip(buffer, f"{kind} {i}"))
    if strips:
        size = strips[0].size
        for strip in strips:
            if strip.size != size:
                check_same_size(strips)
    return strips


def check_same_size(strips: Sequence[U8Array]) -> None:
    """Raise GeometryError unless every strip has the same length."""
    if len({strip.size for strip in strips}) > 1:
        listed = ", ".join(str(strip.size) for strip in strips)
        raise GeometryError(f"strips of one stripe must have the same size; got sizes {listed}")


def output_strip(out: U8Array | None, size: int, name: str) -> U8Array:
    """Return ``out`` checked for use as an output strip, or a new array.

    Args:
        out: caller's output array, or None to allocate one.
        size: required length in bytes.
        name: how error messages name the argument.

    Returns:
        A writable, contiguous uint8 array of ``size`` bytes.

    Raises:
        TypeError: ``out`` is not a 1-D uint8 array.
        GeometryError: ``out`` has the wrong length, is read-only or not contiguous.
    """
    if out is None:
        return np.empty(size, dtype=np.uint8)
    if not isinstance(out, np.ndarray) or out.dtype != UINT8 or out.ndim != 1:
        raise TypeError(f"{name} must be a 1-D numpy.uint8 array")
    if out.size != size:
        raise GeometryError(f"{name} must have the strip size {size}; got {out.size} bytes")
    flags = out.flags
    if not flags.writeable or not flags.c_contiguous:
        raise GeometryError(f"{name} must be writable and contiguous")
    return out


def blocks(strips: Sequence[U8Array | None], size: int) -> Iterator[list[U8Array | None]]:
    """Walk equal-length strips block by block.

    Args:
        strips: the strips, all ``size`` bytes long; None entries stay None.
        size: their length.

    Yields:
        The same block of every strip: the strips themselves when ``size`` is
        at most one block, else slices of ``BLOCK_BYTES`` (the last one shorter).
    """
    step = BLOCK_BYTES
    if size <= step:
        yield list(strips)
        return
    for start in range(0, size, step):
        window = slice(start, start + step)
        yield [None if strip is None else strip[window] for strip in strips]


def fits_one_block(size: int) -> bool:
    """Tell whether strips of ``size`` bytes are processed whole, in a single block."""
    return size <= BLOCK_BYTES


INDEX_PAIRS = BLOCK_BYTES // 2
"""Byte pairs ``gf256.mul_const`` converts to intp at a time: a whole block.

Runs of 32768 pairs (256 KiB of indices) measured about 5% slower in a
4+2 rebuild of 256 KiB strips, and 8192 pairs about 15% slower."""

_scratch = threading.local()
"""Each thread's scratch buffers, kept between calls (see ``_reused``)."""


def _reused(name: str, count: int, dtype: type[np.generic]) -> npt.NDArray[Any]:
    """Return ``count`` elements of this thread's scratch buffer ``name``, growing it if needed.

    Scratch is reused because allocating it per call cost more than the work
    for cache-sized strips: glibc serves fresh allocations of 256 KiB and more
    with mmap until its threshold adapts, and every such call page-faulted.
    A thread keeps at most one buffer of each kind, of the largest size asked.
    """
    buffer: npt.NDArray[Any] | None = getattr(_scratch, name, None)
    if buffer is None or buffer.size < count:
        buffer = np.empty(count, dtype=dtype)
        setattr(_scratch, name, buffer)
    return buffer[:count]


def index_scratch(size: int) -> npt.NDArray[np.intp]:
    """Return the index buffer ``gf256.mul_const`` needs for ``size``-byte strips."""
    return _reused("indices", max(1, min(size // 2, INDEX_PAIRS)), np.intp)


def scratch_words(size: int) -> U64Array:
    """Return the scratch words ``Doubler`` needs for blocks of strips of ``size`` bytes."""
    return _reused("words", min(size, BLOCK_BYTES) // 8, np.uint64)


class Doubler:
    """In-place multiplication by g of one block of an accumulator strip, word by word."""

    def __init__(self, block: U8Array, scratch: U64Array) -> None:
        """Prepare the uint64 view of ``block`` (contiguous) and its byte tail.

        Args:
            block: the accumulator block, contiguous.
            scratch: at least ``block.size // 8`` words, overwritten by each step.
        """
        whole = block.size - block.size % 8
        self.block = block
        self.whole = whole
        self.words: U64Array = block[:whole].view(np.uint64)
        self.scratch = scratch[: whole // 8]
        self.tail: U8Array | None = block[whole:] if whole < block.size else None

    def __call__(self) -> None:
        """Multiply every byte of the block by g."""
        mul2_words(self.words, self.scratch)
        if self.tail is not None:
            mul2_bytes(self.tail)

    def assign_doubled(self, source: U8Array) -> None:
        """Set the block to g times ``source``, a strip block of the same length.

        This saves the pass that copying ``source`` in and doubling it in
        place would take. A strided ``source`` has no word view, so it is
        copied and doubled in place.
        """
        if not source.flags.c_contiguous:
            np.copyto(self.block, source)
            self()
            return
        mul2_words_from(source[: self.whole].view(np.uint64), self.words, self.scratch)
        if self.tail is not None:
            np.take(mul_row(GENERATOR), source[self.whole :], out=self.tail, mode="wrap")
