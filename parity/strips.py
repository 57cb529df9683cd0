"""Views of caller buffers as numpy strips, and the block walk the codecs share.

A strip is one contiguous run of bytes: ``bytes``, ``bytearray``,
``memoryview`` or a 1-D ``numpy.uint8`` array. The codecs read strips
through views (no copy) and write only into arrays they allocate or that
the caller passes as ``out``.

The kernels walk each strip in blocks of ``BLOCK_BYTES`` so that the block
of the output and the scratch words stay in the L2 cache while every data
strip's block streams past once. The bulk of a strip is processed as uint64
words; a tail of fewer than 8 bytes is processed bytewise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from parity.errors import GeometryError
from parity.gf256 import mul2_bytes, mul2_words

Buffer: TypeAlias = bytes | bytearray | memoryview | npt.NDArray[np.uint8]
"""A strip as the caller holds it."""

U8Array: TypeAlias = npt.NDArray[np.uint8]
U64Array: TypeAlias = npt.NDArray[np.uint64]

BLOCK_BYTES = 64 * 1024
"""Bytes of each strip processed per kernel step; a multiple of 8."""


def as_strip(buffer: Buffer, name: str) -> U8Array:
    """View a caller's buffer as a 1-D uint8 array without copying.

    Args:
        buffer: the strip.
        name: how error messages name the strip (for example ``"data strip 2"``).

    Returns:
        A uint8 view of the buffer; a non-contiguous array is copied once.

    Raises:
        TypeError: the buffer is not bytes-like or not a 1-D uint8 array.
    """
    if isinstance(buffer, np.ndarray):
        if buffer.dtype != np.uint8 or buffer.ndim != 1:
            raise TypeError(
                f"{name} must be a 1-D numpy.uint8 array; got dtype {buffer.dtype} "
                f"with {buffer.ndim} dimensions"
            )
        return np.ascontiguousarray(buffer)
    if isinstance(buffer, bytes | bytearray | memoryview):
        view = memoryview(buffer)
        if not view.c_contiguous:
            raise TypeError(f"{name} must be a contiguous buffer")
        return np.frombuffer(view.cast("B"), dtype=np.uint8)
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
    strips = [as_strip(buffer, f"{kind} {i}") for i, buffer in enumerate(buffers)]
    check_same_size(strips)
    return strips


def check_same_size(strips: Sequence[U8Array]) -> None:
    """Raise GeometryError unless every strip has the same length."""
    sizes = {strip.size for strip in strips}
    if len(sizes) > 1:
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
    if not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.ndim != 1:
        raise TypeError(f"{name} must be a 1-D numpy.uint8 array")
    if out.size != size:
        raise GeometryError(f"{name} must have the strip size {size}; got {out.size} bytes")
    if not out.flags.writeable or not out.flags.c_contiguous:
        raise GeometryError(f"{name} must be writable and contiguous")
    return out


def words(strip: U8Array) -> U64Array:
    """View the whole-word prefix of a strip as uint64."""
    return strip[: strip.size - strip.size % 8].view(np.uint64)


def word_blocks(size: int) -> Iterator[slice]:
    """Yield slices of word indices covering ``size // 8`` words, one block each."""
    total = size // 8
    step = BLOCK_BYTES // 8
    for start in range(0, total, step):
        yield slice(start, min(start + step, total))


def tail(strip: U8Array) -> U8Array:
    """View the bytes after the last whole word of a strip (0 to 7 bytes)."""
    return strip[strip.size - strip.size % 8 :]


Lane: TypeAlias = npt.NDArray[Any]
"""One segment of a strip: a block of uint64 words, or the uint8 tail."""

Mul2: TypeAlias = Callable[[Lane], None]
"""Multiplies every byte of a lane by g in place."""


def segments(strips: Sequence[U8Array | None]) -> Iterator[tuple[list[Lane | None], Mul2]]:
    """Walk equal-length strips block by block.

    Args:
        strips: the strips, all of one length; None entries stay None.

    Yields:
        For each block of words and then for the tail (if the length is not a
        multiple of 8): the segment of every strip, and the multiply-by-g
        step that suits the segment's dtype.
    """
    present = [strip for strip in strips if strip is not None]
    size = present[0].size
    word_views = [None if strip is None else words(strip) for strip in strips]
    scratch = np.empty(min(BLOCK_BYTES, size) // 8, dtype=np.uint64)
    for block in word_blocks(size):
        block_scratch = scratch[: block.stop - block.start]
        yield (
            [None if view is None else view[block] for view in word_views],
            functools.partial(mul2_words, scratch=block_scratch),
        )
    if size % 8:
        yield [None if strip is None else tail(strip) for strip in strips], mul2_bytes
