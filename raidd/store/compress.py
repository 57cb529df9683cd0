"""Chunk compression: zstd when it shrinks the chunk, raw bytes when it does not.

A stored chunk is one codec tag byte followed by the payload:

    tag 0x00 RAW   the chunk's bytes as they are
    tag 0x01 ZSTD  one zstd frame that records its content size

Incompressible data (media, archives, encrypted files) is recognized without
compressing it in full: a chunk longer than three samples is first probed by
compressing three samples of 4 KiB (start, middle, end) at zstd level 1, and
if they shrink by less than 3 % the chunk is stored raw. A chunk that passes
the probe is compressed in full and still stored raw unless the frame is
smaller than the chunk. bench/store_parts.py measures what the probe costs
and saves.
"""

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from raidd.errors import IntegrityError

if TYPE_CHECKING:
    import zstandard

__all__ = [
    "CODEC_RAW",
    "CODEC_ZSTD",
    "Compressor",
    "EncodedChunk",
    "decode_chunk",
]

CODEC_RAW = 0x00
CODEC_ZSTD = 0x01
CODEC_NAMES = {CODEC_RAW: "raw", CODEC_ZSTD: "zstd"}

SAMPLE_SIZE = 4096
SAMPLE_COUNT = 3
# A probe that saves less than this fraction predicts a chunk not worth compressing.
PROBE_MIN_SAVING = 0.03
DEFAULT_LEVEL = 3
# Decoding rejects frames that claim more than this, so a corrupt or hostile
# frame cannot make the reader allocate without bound.
MAX_DECODED_SIZE = 64 << 20


def _zstandard() -> Any:
    """Return the zstandard module, imported on first use.

    Its extension module is 11 MB, and a backup that finds no change never
    compresses, so it does not pay for reading it from a cold page cache.
    """
    import zstandard

    return zstandard


@dataclass(frozen=True, slots=True)
class EncodedChunk:
    """A chunk ready for sealing: the codec tag byte and the payload."""

    codec: int
    payload: bytes

    def to_bytes(self) -> bytes:
        """Return the stored form: the tag byte, then the payload."""
        return bytes((self.codec,)) + self.payload


class Compressor:
    """Encode chunks with zstd or raw; one instance may be shared by threads.

    zstd compression contexts are not thread-safe, so each thread gets its own.
    """

    def __init__(self, level: int = DEFAULT_LEVEL, probe: bool = True) -> None:
        """Create a compressor.

        Args:
            level: zstd level for chunks that pass the probe (1 to 22).
            probe: probe samples first; False compresses every chunk in full.
        """
        if not 1 <= level <= 22:
            raise ValueError(f"zstd level must be 1 to 22, got {level}")
        self.level = level
        self.probe = probe
        self._local = threading.local()

    def _contexts(self) -> "tuple[zstandard.ZstdCompressor, zstandard.ZstdCompressor]":
        contexts = getattr(self._local, "contexts", None)
        if contexts is None:
            zstandard = _zstandard()
            contexts = (
                zstandard.ZstdCompressor(level=self.level, write_content_size=True),
                zstandard.ZstdCompressor(level=1, write_content_size=False),
            )
            self._local.contexts = contexts
        return contexts

    def looks_incompressible(self, data: bytes | memoryview) -> bool:
        """Predict from three 4 KiB samples whether zstd would save under 3 %.

        Chunks of three samples or less are never predicted incompressible; they
        are cheap to compress in full.
        """
        size = len(data)
        if size <= SAMPLE_SIZE * SAMPLE_COUNT:
            return False
        view = memoryview(data)
        starts = (0, (size - SAMPLE_SIZE) // 2, size - SAMPLE_SIZE)
        sample = b"".join(view[start : start + SAMPLE_SIZE] for start in starts)
        probe = self._contexts()[1].compress(sample)
        return len(probe) > len(sample) * (1.0 - PROBE_MIN_SAVING)

    def encode(self, data: bytes) -> EncodedChunk:
        """Compress a chunk when that shrinks it; otherwise keep it raw."""
        if self.probe and self.looks_incompressible(data):
            return EncodedChunk(CODEC_RAW, data)
        frame = self._contexts()[0].compress(data)
        if len(frame) < len(data):
            return EncodedChunk(CODEC_ZSTD, frame)
        return EncodedChunk(CODEC_RAW, data)


def decode_chunk(stored: bytes | bytearray, expected_size: int | None = None) -> bytes:
    """Decode a stored chunk (tag byte and payload) back into its bytes.

    Args:
        stored: the opened (authenticated) object payload.
        expected_size: the chunk length the catalog records, when known.

    Raises:
        IntegrityError: unknown tag, a frame that does not decode, or a size
            that differs from `expected_size`. After authentication this means
            a bug or a format newer than this reader, never bit rot.
    """
    if not stored:
        raise IntegrityError("stored chunk is empty: it has no codec tag byte")
    codec = stored[0]
    payload = memoryview(stored)[1:]
    if codec == CODEC_RAW:
        data = bytes(payload)
    elif codec == CODEC_ZSTD:
        data = _decode_zstd(payload)
    else:
        raise IntegrityError(
            f"stored chunk has unknown codec tag 0x{codec:02x} (known: 0x00 raw, 0x01 zstd); "
            "it may come from a newer raidd"
        )
    if expected_size is not None and len(data) != expected_size:
        raise IntegrityError(
            f"decoded chunk is {len(data)} bytes but the catalog records {expected_size}"
        )
    return data


_decompressors = threading.local()


def _decode_zstd(payload: memoryview) -> bytes:
    zstandard = _zstandard()
    try:
        parameters = zstandard.get_frame_parameters(payload)
    except zstandard.ZstdError as error:
        raise IntegrityError(f"stored chunk has an invalid zstd frame header: {error}") from None
    size = parameters.content_size
    if size == zstandard.CONTENTSIZE_UNKNOWN or size > MAX_DECODED_SIZE:
        raise IntegrityError(
            f"stored chunk's zstd frame declares content size {size}, outside 0 to "
            f"{MAX_DECODED_SIZE} bytes"
        )
    decompressor = getattr(_decompressors, "context", None)
    if decompressor is None:
        # A decompression context is reused per thread: making one costs more
        # than decoding a small chunk.
        decompressor = _decompressors.context = zstandard.ZstdDecompressor()
    try:
        return decompressor.decompress(payload, max_output_size=size)
    except zstandard.ZstdError as error:
        raise IntegrityError(f"stored chunk's zstd frame does not decode: {error}") from None
