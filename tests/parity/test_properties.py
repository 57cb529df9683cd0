"""Seeded property tests over member counts, legal strip sizes, contents and erasures.

Each test is seeded with @seed, so a run is repeatable; on failure hypothesis
prints the drawn arguments (including the content seed) that reproduce it.
"""

import numpy as np
import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from parity import (
    Geometry,
    Level,
    TooManyErasures,
    encode_p,
    encode_pq,
    reconstruct,
    reference,
    verify,
)

PROPERTIES = settings(max_examples=200, deadline=None, database=None)
STRIP_SIZES = st.sampled_from([4096, 8192, 16384])
FILLS = st.sampled_from(["random", "zeros", "ones", "sparse"])
CONTENT_SEEDS = st.integers(0, 2**32 - 1)


def make_strips(content_seed: int, fill: str, count: int, size: int) -> list[bytes]:
    """Build data strips: random, all zero, all 0xff, or mostly zero with a few random bytes."""
    rng = np.random.default_rng(content_seed)
    if fill == "zeros":
        return [bytes(size)] * count
    if fill == "ones":
        return [b"\xff" * size] * count
    strips = [rng.bytes(size) for _ in range(count)]
    if fill == "sparse":
        mask = rng.random(size * count) < 0.01
        raw = np.frombuffer(b"".join(strips), dtype=np.uint8) * mask
        strips = [raw[i * size : (i + 1) * size].tobytes() for i in range(count)]
    return strips


@seed(20261204)
@PROPERTIES
@given(
    members=st.integers(4, 12),
    strip_size=STRIP_SIZES,
    content_seed=CONTENT_SEEDS,
    fill=FILLS,
    data=st.data(),
)
def test_raid6_encode_and_rebuild(
    members: int, strip_size: int, content_seed: int, fill: str, data: st.DataObject
) -> None:
    geometry = Geometry(Level.RAID6, members, strip_size)
    strips = make_strips(content_seed, fill, geometry.data_strips, strip_size)
    p, q = encode_pq(strips)
    assert p.tobytes() == reference.encode_p(strips)
    assert q.tobytes() == reference.encode_q(strips)
    stripe = [*strips, p.tobytes(), q.tobytes()]
    missing = data.draw(st.sets(st.integers(0, members - 1), max_size=2), label="missing")
    damaged = [None if i in missing else strip for i, strip in enumerate(stripe)]
    rebuilt = reconstruct(Level.RAID6, damaged)
    assert [strip.tobytes() for strip in rebuilt] == stripe


@seed(20261205)
@PROPERTIES
@given(
    members=st.integers(3, 10),
    strip_size=STRIP_SIZES,
    content_seed=CONTENT_SEEDS,
    fill=FILLS,
    lost=st.integers(0, 9),
)
def test_raid5_encode_and_rebuild(
    members: int, strip_size: int, content_seed: int, fill: str, lost: int
) -> None:
    geometry = Geometry(Level.RAID5, members, strip_size)
    strips = make_strips(content_seed, fill, geometry.data_strips, strip_size)
    p = encode_p(strips)
    assert p.tobytes() == reference.encode_p(strips)
    stripe = [*strips, p.tobytes()]
    damaged: list[bytes | None] = list(stripe)
    damaged[lost % members] = None
    assert [strip.tobytes() for strip in reconstruct(Level.RAID5, damaged)] == stripe


@seed(20261206)
@PROPERTIES
@given(
    members=st.integers(4, 10),
    strip_size=STRIP_SIZES,
    content_seed=CONTENT_SEEDS,
    position=st.integers(0, 9),
    offset=st.integers(0, 16383),
    error=st.integers(1, 255),
)
def test_raid6_locates_random_corruption(
    members: int, strip_size: int, content_seed: int, position: int, offset: int, error: int
) -> None:
    k = members - 2
    strips = make_strips(content_seed, "random", k, strip_size)
    p, q = encode_pq(strips)
    stripe = [bytearray(strip) for strip in [*strips, p.tobytes(), q.tobytes()]]
    position %= members
    stripe[position][offset % strip_size] ^= error
    result = verify(Level.RAID6, stripe)
    assert result.bad_index == position
    assert not result.multiple


@seed(20261207)
@PROPERTIES
@given(
    level=st.sampled_from([Level.RAID5, Level.RAID6]),
    members=st.integers(4, 9),
    stripe_number=st.integers(0, 1000),
    content_seed=CONTENT_SEEDS,
    data=st.data(),
)
def test_lost_members_rebuilt_through_layout(
    level: Level, members: int, stripe_number: int, content_seed: int, data: st.DataObject
) -> None:
    """Place a stripe on members by the layout, lose members, rebuild in logical order."""
    geometry = Geometry(level, members, 4096)
    layout = geometry.layout(stripe_number)
    strips = make_strips(content_seed, "random", geometry.data_strips, 4096)
    on_member: dict[int, bytes] = {}
    for index, holders in enumerate(layout.data):
        on_member[holders[0]] = strips[index]
    assert layout.p is not None
    if level is Level.RAID6:
        p, q = encode_pq(strips)
        assert layout.q is not None
        on_member[layout.q] = q.tobytes()
    else:
        p = encode_p(strips)
    on_member[layout.p] = p.tobytes()
    lost = data.draw(st.sets(st.integers(0, members - 1), max_size=geometry.tolerance))
    assert geometry.survives(lost)
    order = layout.strip_members()
    logical = [None if member in lost else on_member[member] for member in order]
    rebuilt = reconstruct(level, logical)
    assert [strip.tobytes() for strip in rebuilt[: geometry.data_strips]] == strips


@seed(20261208)
@PROPERTIES
@given(
    level=st.sampled_from([Level.RAID1, Level.RAID10]),
    copies_or_pairs=st.integers(2, 6),
    content_seed=CONTENT_SEEDS,
    data=st.data(),
)
def test_mirrors_rebuild_when_geometry_survives(
    level: Level, copies_or_pairs: int, content_seed: int, data: st.DataObject
) -> None:
    """Mirrors rebuild exactly the patterns Geometry.survives accepts, and raise otherwise."""
    members = copies_or_pairs * 2 if level is Level.RAID10 else copies_or_pairs
    geometry = Geometry(level, members, 4096)
    strips = make_strips(content_seed, "random", geometry.data_strips, 4096)
    stripe = [strips[i // 2] if level is Level.RAID10 else strips[0] for i in range(members)]
    lost = data.draw(st.sets(st.integers(0, members - 1)), label="lost")
    damaged = [None if i in lost else strip for i, strip in enumerate(stripe)]
    if geometry.survives(lost):
        assert [strip.tobytes() for strip in reconstruct(level, damaged)] == stripe
    else:
        with pytest.raises(TooManyErasures):
            reconstruct(level, damaged)
