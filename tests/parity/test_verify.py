"""Verification of full stripes: clean, one corrupted strip at every position, two corrupted."""

import itertools

import numpy as np
import pytest

from parity import Level, Verification, reference, verify
from tests.parity.helpers import random_strips

CLEAN = Verification(ok=True, p_ok=True, q_ok=True, bad_index=None, multiple=False)


def raid6_stripe(seed: int, k: int, size: int) -> list[bytes]:
    data = random_strips(seed, k, size)
    return [*data, reference.encode_p(data), reference.encode_q(data)]


def corrupt(strip: bytes, seed: int, damage: str) -> bytes:
    """Return a corrupted copy: one flipped byte, a few bytes, or the whole strip replaced."""
    rng = np.random.default_rng(seed)
    damaged = bytearray(strip)
    if damage == "first byte":
        damaged[0] ^= 0x01
    elif damage == "last byte":
        damaged[-1] ^= 0x80
    elif damage == "scattered":
        for position in rng.choice(len(strip), size=5, replace=False):
            damaged[position] ^= int(rng.integers(1, 256))
    else:
        damaged = bytearray(
            bytes(a ^ b for a, b in zip(strip, rng.bytes(len(strip)), strict=True))
        )
    assert bytes(damaged) != strip
    return bytes(damaged)


@pytest.mark.parametrize("size", [13, 64, 4096])
@pytest.mark.parametrize("k", [2, 3, 5, 8])
def test_raid6_clean_stripe(k: int, size: int) -> None:
    assert verify(Level.RAID6, raid6_stripe(k, k, size)) == CLEAN


@pytest.mark.parametrize("damage", ["first byte", "last byte", "scattered", "whole strip"])
@pytest.mark.parametrize("k", [2, 3, 5, 8])
def test_raid6_locates_every_position(k: int, damage: str) -> None:
    """A single corrupted strip is found at every position, data, P and Q alike."""
    stripe = raid6_stripe(k, k, 61)
    for position in range(k + 2):
        damaged = list(stripe)
        damaged[position] = corrupt(stripe[position], position, damage)
        result = verify(Level.RAID6, damaged)
        assert result.bad_index == position, (position, result)
        assert not result.ok
        assert not result.multiple
        assert result.p_ok == (position == k + 1)
        assert result.q_ok == (position == k)
        assert reference.locate_raid6(damaged) == position


@pytest.mark.parametrize("k", [2, 3, 5])
def test_raid6_two_corrupted_strips(k: int) -> None:
    stripe = raid6_stripe(k, k, 64)
    for first, second in itertools.combinations(range(k + 2), 2):
        damaged = list(stripe)
        damaged[first] = corrupt(stripe[first], first, "whole strip")
        damaged[second] = corrupt(stripe[second], 100 + second, "whole strip")
        result = verify(Level.RAID6, damaged)
        assert result.multiple, (first, second, result)
        assert result.bad_index is None
        assert not result.ok
        assert reference.locate_raid6(damaged) is None


def test_raid6_two_corrupted_bytes_in_different_places() -> None:
    """Two strips each wrong at their own byte: every byte alone points elsewhere."""
    stripe = raid6_stripe(1, 4, 64)
    damaged = list(stripe)
    damaged[0] = corrupt(stripe[0], 0, "first byte")
    damaged[3] = corrupt(stripe[3], 0, "last byte")
    result = verify(Level.RAID6, damaged)
    assert result.multiple
    assert result.bad_index is None


@pytest.mark.parametrize("k", [2, 4])
def test_raid5_detects_but_cannot_locate(k: int) -> None:
    data = random_strips(k, k, 40)
    stripe = [*data, reference.encode_p(data)]
    assert verify(Level.RAID5, stripe) == Verification(True, True, None, None, False)
    for position in range(k + 1):
        damaged = list(stripe)
        damaged[position] = corrupt(stripe[position], position, "scattered")
        assert verify(Level.RAID5, damaged) == Verification(False, False, None, None, False)


def test_mirrors_compare_copies() -> None:
    copy = random_strips(3, 1, 32)[0]
    other = corrupt(copy, 3, "last byte")
    assert verify(Level.RAID1, [copy, copy, copy]).ok
    assert not verify(Level.RAID1, [copy, copy, other]).ok
    a, b = random_strips(4, 2, 32)
    assert verify(Level.RAID10, [a, a, b, b]).ok
    result = verify(Level.RAID10, [a, a, b, corrupt(b, 4, "first byte")])
    assert result == Verification(False, False, None, None, False)
    assert not verify(Level.RAID10, [a, b, a, b]).ok


def test_raid0_has_nothing_to_check() -> None:
    assert verify(Level.RAID0, random_strips(5, 2, 16)).ok


def test_verify_needs_every_strip() -> None:
    stripe = raid6_stripe(2, 2, 16)
    with pytest.raises(TypeError, match="strip 1 is None, reconstruct it first"):
        verify(Level.RAID6, [stripe[0], None, *stripe[2:]])  # type: ignore[list-item]
