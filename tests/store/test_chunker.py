"""Content-defined chunking: keyed cut points, size bounds, streaming, memory."""

import io
import random
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyfastcdc import FastCDC

from raidd.store.chunker import (
    AVG_SIZE,
    MAX_SIZE,
    MIN_SIZE,
    Chunker,
    derive_seed,
)

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


def random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture(scope="module")
def data() -> bytes:
    return random_bytes(24 << 20, seed=7)


def test_seed_is_deterministic() -> None:
    assert derive_seed(KEY_A) == derive_seed(KEY_A)


def test_seed_depends_on_key() -> None:
    assert derive_seed(KEY_A) != derive_seed(KEY_B)


def test_seed_fits_63_bits() -> None:
    for index in range(200):
        seed = derive_seed(index.to_bytes(32, "little"))
        assert 0 < seed < 1 << 63


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_seed_key_length_checked(size: int) -> None:
    with pytest.raises(ValueError, match="must be 32 bytes"):
        derive_seed(bytes(size))


def test_chunks_concatenate_to_input(data: bytes) -> None:
    chunks = list(Chunker(KEY_A).chunk_buffer(data))
    assert b"".join(chunk.data for chunk in chunks) == data
    offsets = [chunk.offset for chunk in chunks]
    assert offsets == sorted(offsets)
    assert offsets[0] == 0


def test_chunk_sizes_within_bounds(data: bytes) -> None:
    chunks = list(Chunker(KEY_A).chunk_buffer(data))
    lengths = [len(chunk.data) for chunk in chunks]
    assert all(MIN_SIZE <= length <= MAX_SIZE for length in lengths[:-1])
    assert 0 < lengths[-1] <= MAX_SIZE
    mean = sum(lengths) / len(lengths)
    assert AVG_SIZE * 0.8 < mean < (AVG_SIZE + MIN_SIZE) * 1.4


def test_cut_points_depend_on_key(data: bytes) -> None:
    points_a = set(Chunker(KEY_A).cut_points(data))
    points_b = set(Chunker(KEY_B).cut_points(data))
    unseeded = {
        c.offset + c.length
        for c in FastCDC(AVG_SIZE, min_size=MIN_SIZE, max_size=MAX_SIZE).cut_buf(data)
    }
    assert len(points_a & points_b) <= 2
    assert len(points_a & unseeded) <= 2


def test_stream_matches_buffer(data: bytes) -> None:
    chunker = Chunker(KEY_A)
    from_buffer = [(c.offset, c.data) for c in chunker.chunk_buffer(data)]
    from_stream = [(c.offset, c.data) for c in chunker.chunk_stream(io.BytesIO(data))]
    assert from_stream == from_buffer


def test_stream_limit_and_base_offset(data: bytes) -> None:
    chunker = Chunker(KEY_A)
    stream = io.BytesIO(data)
    stream.seek(1 << 20)
    chunks = list(chunker.chunk_stream(stream, limit=5 << 20, base_offset=1 << 20))
    assert b"".join(c.data for c in chunks) == data[1 << 20 : 6 << 20]
    assert chunks[0].offset == 1 << 20
    expected = [(1 << 20) + c.offset for c in chunker.chunk_buffer(data[1 << 20 : 6 << 20])]
    assert [c.offset for c in chunks] == expected
    assert stream.tell() == 6 << 20


@pytest.mark.parametrize("size", [1, 4096, MIN_SIZE, AVG_SIZE])
def test_small_input_is_one_chunk(size: int) -> None:
    payload = random_bytes(size, seed=size)
    chunker = Chunker(KEY_A)
    (chunk,) = list(chunker.chunk_buffer(payload))
    assert chunk.data == payload
    (streamed,) = list(chunker.chunk_stream(io.BytesIO(payload)))
    assert streamed.data == payload
    (limited,) = list(chunker.chunk_stream(io.BytesIO(payload * 2), limit=size))
    assert limited.data == payload


def test_just_over_target_is_cut_normally() -> None:
    payload = random_bytes(AVG_SIZE + 1, seed=3)
    chunker = Chunker(KEY_A)
    streamed = [c.data for c in chunker.chunk_stream(io.BytesIO(payload))]
    assert b"".join(streamed) == payload
    assert streamed == [c.data for c in chunker.chunk_buffer(payload)]


def test_empty_input_has_no_chunk() -> None:
    chunker = Chunker(KEY_A)
    assert list(chunker.chunk_buffer(b"")) == []
    assert list(chunker.chunk_stream(io.BytesIO(b""))) == []


def test_insertion_keeps_most_chunks(data: bytes) -> None:
    """An edit in the middle changes only the chunks around it (the point of CDC)."""
    chunker = Chunker(KEY_A)
    middle = len(data) // 2
    edited = data[:middle] + b"inserted bytes" + data[middle:]
    before = {c.data for c in chunker.chunk_buffer(data)}
    after = [c.data for c in chunker.chunk_buffer(edited)]
    changed = [piece for piece in after if piece not in before]
    assert 1 <= len(changed) <= 3


def test_zeros_cut_at_maximum() -> None:
    chunks = list(Chunker(KEY_A).chunk_buffer(bytes(5 * MAX_SIZE)))
    assert [len(c.data) for c in chunks] == [MAX_SIZE] * 5


class _GeneratedStream(io.RawIOBase):
    """A stream of `size` pseudo-random bytes produced on demand, never held whole."""

    def __init__(self, size: int) -> None:
        self.remaining = size
        self.random = random.Random(11)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self.remaining, 1 << 20)
        buffer[:count] = self.random.randbytes(count)
        self.remaining -= count
        return count


def test_stream_memory_is_bounded() -> None:
    chunker = Chunker(KEY_A)
    total = 0
    tracemalloc.start()
    try:
        for chunk in chunker.chunk_stream(io.BufferedReader(_GeneratedStream(96 << 20))):
            total += len(chunk.data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 96 << 20
    assert peak < 12 << 20


@settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    size=st.integers(min_value=0, max_value=6 << 20),
    limit=st.one_of(st.none(), st.integers(min_value=0, max_value=6 << 20)),
)
def test_stream_equals_buffer_any_size(data: bytes, size: int, limit: int | None) -> None:
    """For any length and limit, streaming cuts exactly where the buffer cut does."""
    payload = data[:size]
    expected_bytes = payload if limit is None else payload[:limit]
    chunker = Chunker(KEY_A)
    streamed = [(c.offset, c.data) for c in chunker.chunk_stream(io.BytesIO(payload), limit=limit)]
    assert streamed == [(c.offset, c.data) for c in chunker.chunk_buffer(expected_bytes)]
