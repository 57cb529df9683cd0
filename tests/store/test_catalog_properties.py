"""Property tests of the delta format: any delta round-trips, any garbage fails cleanly.

Hypothesis runs derandomized (a fixed seed), so a failure repeats on every run
and prints the falsifying example.
"""

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from raidd.errors import IntegrityError
from raidd.store.catalog_format import (
    CHUNK_ID_SIZE,
    ChunkEntry,
    CommitDelta,
    Deletion,
    Forget,
    Version,
    decode_delta,
    encode_delta,
)
from raidd.store.scan import EntryType

PROPERTY_SETTINGS = settings(max_examples=150, derandomize=True, deadline=None)

u32 = st.integers(min_value=0, max_value=(1 << 32) - 1)
u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
i64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
paths = st.binary(min_size=0, max_size=40)
roots = st.sampled_from(["crm", "exports", "ünïcode"])


@st.composite
def versions(draw: st.DrawFn) -> Version:
    kind = draw(st.sampled_from(list(EntryType)))
    return Version(
        root=draw(roots),
        path=draw(paths),
        type=kind,
        mode=draw(u32),
        uid=draw(u32),
        gid=draw(u32),
        mtime_ns=draw(i64),
        size=draw(u64),
        chunks=tuple(
            ChunkEntry(draw(u64), draw(u32), draw(st.binary(min_size=32, max_size=32)))
            for _ in range(draw(st.integers(0, 3)))
        ),
        extents=tuple(draw(st.lists(st.tuples(u64, u64), max_size=3))),
        link_target=draw(st.binary(max_size=20)) if kind is EntryType.SYMLINK else None,
        hard_link_group=draw(u64),
        xattrs=tuple(
            draw(st.lists(st.tuples(st.binary(max_size=10), st.binary(max_size=30)), max_size=3))
        ),
        changed_during_read=draw(st.booleans()),
        sqlite_copy=draw(st.booleans()),
        ctime_ns=draw(i64),
        inode=draw(u64),
    )


records = st.one_of(
    versions(),
    st.builds(Deletion, roots, paths),
    st.builds(Forget, roots, st.lists(u64, max_size=4).map(tuple)),
)


@PROPERTY_SETTINGS
@given(st.lists(records, max_size=6), u64, u64, i64)
def test_any_delta_round_trips(items: list, sequence: int, parent: int, time_ns: int) -> None:
    delta = CommitDelta(sequence, parent, time_ns, ("crm", "exports", "ünïcode"), tuple(items))
    assert decode_delta(encode_delta(delta)) == delta


@PROPERTY_SETTINGS
@given(st.binary(max_size=300))
def test_garbage_fails_with_integrity_error(data: bytes) -> None:
    try:
        decode_delta(data)
    except IntegrityError:
        return
    except UnicodeDecodeError:
        raise AssertionError("a bad root name escaped as UnicodeDecodeError") from None


@PROPERTY_SETTINGS
@given(st.lists(records, min_size=1, max_size=4), st.data())
def test_corrupted_delta_never_escapes(items: list, data: st.DataObject) -> None:
    """A flipped byte either decodes to some delta or raises IntegrityError, nothing else."""
    encoded = bytearray(
        encode_delta(CommitDelta(1, 0, 5, ("crm", "exports", "ünïcode"), tuple(items)))
    )
    position = data.draw(st.integers(0, len(encoded) - 1))
    encoded[position] ^= data.draw(st.integers(1, 255))
    with contextlib.suppress(IntegrityError):
        decode_delta(bytes(encoded))


def test_chunk_id_size_constant() -> None:
    assert CHUNK_ID_SIZE == 32
