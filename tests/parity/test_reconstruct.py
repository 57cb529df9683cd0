"""Every erasure pattern of small stripes, for every level, against the reference codec."""

import itertools

import numpy as np
import pytest

from parity import Geometry, Level, TooManyErasures, encode_p, encode_pq, reconstruct, reference
from tests.parity.helpers import as_bytes, random_strips

# 61 bytes leaves a 5-byte tail after the uint64 words; 203 spans several
# 64-byte blocks when the small_blocks fixture is active.
SIZES = [1, 8, 61, 203]


def raid6_stripe(seed: int, k: int, size: int) -> list[bytes]:
    data = random_strips(seed, k, size)
    return [*data, reference.encode_p(data), reference.encode_q(data)]


def raid5_stripe(seed: int, k: int, size: int) -> list[bytes]:
    data = random_strips(seed, k, size)
    return [*data, reference.encode_p(data)]


def erase(stripe: list[bytes], missing: tuple[int, ...]) -> list[bytes | None]:
    return [None if i in missing else strip for i, strip in enumerate(stripe)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("k", [2, 3, 4, 6])
def test_raid6_every_pattern_up_to_two(k: int, size: int, small_blocks: int) -> None:
    stripe = raid6_stripe(k * 1000 + size, k, size)
    for count in (0, 1, 2):
        for missing in itertools.combinations(range(k + 2), count):
            damaged = erase(stripe, missing)
            expected = reference.rebuild_raid6(damaged)
            assert expected == stripe, missing
            assert as_bytes(reconstruct(Level.RAID6, damaged)) == expected, missing


@pytest.mark.parametrize("k", [2, 3, 5])
def test_raid6_three_missing_raises(k: int) -> None:
    stripe = raid6_stripe(k, k, 16)
    for missing in itertools.combinations(range(k + 2), 3):
        with pytest.raises(
            TooManyErasures, match=r"strips \d, \d, \d are missing and at most 2 can be rebuilt"
        ) as caught:
            reconstruct(Level.RAID6, erase(stripe, missing))
        assert caught.value.missing == missing
        assert caught.value.tolerance == 2


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("k", [2, 3, 4, 7])
def test_raid5_every_single_erasure(k: int, size: int, small_blocks: int) -> None:
    stripe = raid5_stripe(k * 100 + size, k, size)
    assert as_bytes(reconstruct(Level.RAID5, stripe)) == stripe
    for lost in range(k + 1):
        damaged = erase(stripe, (lost,))
        assert reference.rebuild_raid5(damaged) == stripe
        assert as_bytes(reconstruct(Level.RAID5, damaged)) == stripe, lost


def test_raid5_two_missing_raises() -> None:
    stripe = raid5_stripe(5, 3, 32)
    for missing in itertools.combinations(range(4), 2):
        with pytest.raises(
            TooManyErasures, match=r"strips \d, \d are missing and at most 1 can be rebuilt$"
        ) as caught:
            reconstruct(Level.RAID5, erase(stripe, missing))
        assert caught.value.missing == missing
        assert caught.value.tolerance == 1


@pytest.mark.parametrize("members", [2, 3, 4])
def test_raid1_every_pattern(members: int) -> None:
    copy = random_strips(members, 1, 100)[0]
    stripe = [copy] * members
    for count in range(members + 1):
        for missing in itertools.combinations(range(members), count):
            damaged = erase(stripe, missing)
            if count == members:
                with pytest.raises(TooManyErasures) as caught:
                    reconstruct(Level.RAID1, damaged)
                assert caught.value.tolerance == members - 1
            else:
                assert as_bytes(reconstruct(Level.RAID1, damaged)) == stripe


@pytest.mark.parametrize("members", [4, 6])
def test_raid10_every_pattern_agrees_with_survives(members: int) -> None:
    data = random_strips(members, members // 2, 48)
    stripe = [strip for strip in data for _ in range(2)]
    geometry = Geometry(Level.RAID10, members, 4096)
    for count in range(members + 1):
        for missing in itertools.combinations(range(members), count):
            damaged = erase(stripe, missing)
            if geometry.survives(missing):
                assert as_bytes(reconstruct(Level.RAID10, damaged)) == stripe, missing
            else:
                with pytest.raises(TooManyErasures, match="both copies of data strip"):
                    reconstruct(Level.RAID10, damaged)


def test_raid0_any_missing_raises() -> None:
    stripe = random_strips(0, 3, 32)
    assert as_bytes(reconstruct(Level.RAID0, stripe)) == stripe
    for lost in range(3):
        with pytest.raises(
            TooManyErasures, match=r"strip \d is missing and at most 0 can be rebuilt$"
        ) as caught:
            reconstruct(Level.RAID0, erase(stripe, (lost,)))
        assert caught.value.missing == (lost,)
        assert caught.value.tolerance == 0


def test_present_strips_are_views() -> None:
    data = [bytearray(strip) for strip in random_strips(9, 4, 64)]
    p, q = encode_pq(data)
    strips: list[bytearray | np.ndarray | None] = [*data, p, q]
    strips[1] = None
    strips[4] = None
    rebuilt = reconstruct(Level.RAID6, strips)
    for i in (0, 2, 3):
        assert np.shares_memory(rebuilt[i], data[i])
    assert rebuilt[5] is q or np.shares_memory(rebuilt[5], q)
    assert rebuilt[1].tobytes() == bytes(data[1])
    assert rebuilt[4].tobytes() == encode_p(data).tobytes()


def test_rebuilt_mirror_copy_is_not_a_view() -> None:
    """A rebuilt copy is a new array, so writing it cannot change the survivor."""
    survivor = np.frombuffer(bytearray(b"x" * 64), dtype=np.uint8)
    rebuilt = reconstruct(Level.RAID1, [None, survivor])
    assert not np.shares_memory(rebuilt[0], survivor)
    assert rebuilt[0].tobytes() == b"x" * 64
