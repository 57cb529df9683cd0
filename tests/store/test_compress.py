"""Chunk codecs: zstd when it shrinks, raw otherwise, a cheap probe, strict decoding."""

import os
import random
import threading

import pytest
import zstandard

from raidd.errors import IntegrityError
from raidd.store.compress import (
    CODEC_RAW,
    CODEC_ZSTD,
    MAX_DECODED_SIZE,
    Compressor,
    EncodedChunk,
    decode_chunk,
)

TEXT = b"".join(
    b"order %d customer ALFKI shipped to Berlin, 12209 Obere Str. 57\n" % index
    for index in range(20000)
)


def test_text_is_compressed() -> None:
    encoded = Compressor().encode(TEXT)
    assert encoded.codec == CODEC_ZSTD
    assert len(encoded.payload) < len(TEXT) // 4
    assert decode_chunk(encoded.to_bytes(), len(TEXT)) == TEXT


def test_random_data_stored_raw() -> None:
    data = os.urandom(512 << 10)
    encoded = Compressor().encode(data)
    assert encoded.codec == CODEC_RAW
    assert encoded.payload == data
    assert encoded.to_bytes() == b"\x00" + data
    assert decode_chunk(encoded.to_bytes()) == data


def test_probe_skips_full_compression(monkeypatch: pytest.MonkeyPatch) -> None:
    """Random data never reaches the full-size compressor when the probe is on."""
    compressor = Compressor()
    full, _ = compressor._contexts()
    calls: list[int] = []

    class Counting:
        def compress(self, data: bytes) -> bytes:
            calls.append(len(data))
            return full.compress(data)

    sample_context = compressor._contexts()[1]
    monkeypatch.setattr(compressor._local, "contexts", (Counting(), sample_context))
    compressor.encode(os.urandom(1 << 20))
    assert calls == []
    compressor.encode(TEXT)
    assert calls == [len(TEXT)]


def test_without_probe_random_still_raw() -> None:
    data = os.urandom(256 << 10)
    assert Compressor(probe=False).encode(data).codec == CODEC_RAW


def test_small_chunk_never_probed() -> None:
    compressor = Compressor()
    assert not compressor.looks_incompressible(os.urandom(SMALL := 12288))
    assert compressor.encode(b"a" * SMALL).codec == CODEC_ZSTD


def test_probe_flags_random_not_text() -> None:
    compressor = Compressor()
    assert compressor.looks_incompressible(os.urandom(1 << 20))
    assert not compressor.looks_incompressible(TEXT)


def test_tiny_and_empty_chunks_raw() -> None:
    compressor = Compressor()
    for data in (b"", b"x", b"ab"):
        encoded = compressor.encode(data)
        assert encoded.codec == CODEC_RAW
        assert decode_chunk(encoded.to_bytes()) == data


def test_level_validated() -> None:
    with pytest.raises(ValueError, match="zstd level must be 1 to 22"):
        Compressor(level=0)


def test_threads_share_compressor() -> None:
    compressor = Compressor()
    inputs = [random.Random(index).randbytes(4096) * 64 for index in range(16)]
    results: dict[int, bytes] = {}

    def work(index: int) -> None:
        results[index] = decode_chunk(compressor.encode(inputs[index]).to_bytes())

    threads = [threading.Thread(target=work, args=(index,)) for index in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[index] for index in range(16)] == inputs


def test_decode_empty_rejected() -> None:
    with pytest.raises(IntegrityError, match="no codec tag"):
        decode_chunk(b"")


def test_decode_unknown_tag_rejected() -> None:
    with pytest.raises(IntegrityError, match="unknown codec tag 0x07"):
        decode_chunk(b"\x07payload")


def test_decode_truncated_frame_rejected() -> None:
    stored = Compressor().encode(TEXT).to_bytes()
    with pytest.raises(IntegrityError, match="does not decode"):
        decode_chunk(stored[:-8])


def test_decode_garbage_frame_rejected() -> None:
    with pytest.raises(IntegrityError, match="invalid zstd frame header"):
        decode_chunk(b"\x01not a zstd frame")


def test_decode_size_mismatch_rejected() -> None:
    stored = Compressor().encode(TEXT).to_bytes()
    with pytest.raises(IntegrityError, match="catalog records 5"):
        decode_chunk(stored, expected_size=5)


def test_decode_unknown_content_size_rejected() -> None:
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(TEXT)
    with pytest.raises(IntegrityError, match="declares content size"):
        decode_chunk(b"\x01" + frame)


def test_decode_oversized_frame_rejected() -> None:
    frame = zstandard.ZstdCompressor().compress(bytes(MAX_DECODED_SIZE + 1))
    with pytest.raises(IntegrityError, match="declares content size 67108865"):
        decode_chunk(EncodedChunk(CODEC_ZSTD, frame).to_bytes())
