"""Stripe geometry: placement per level, validation messages, locate and survives."""

import itertools

import pytest

from parity import Geometry, GeometryError, Level, StripeLayout, StripLocation

KIB = 1024


def test_raid5_left_symmetric_four_members() -> None:
    """P moves one member left per stripe and data starts right after it (Linux md)."""
    geometry = Geometry(Level.RAID5, 4, 64 * KIB)
    expected = [
        StripeLayout(0, ((0,), (1,), (2,)), 3, None),
        StripeLayout(1, ((3,), (0,), (1,)), 2, None),
        StripeLayout(2, ((2,), (3,), (0,)), 1, None),
        StripeLayout(3, ((1,), (2,), (3,)), 0, None),
        StripeLayout(4, ((0,), (1,), (2,)), 3, None),
    ]
    assert [geometry.layout(stripe) for stripe in range(5)] == expected


def test_raid6_q_follows_p() -> None:
    geometry = Geometry(Level.RAID6, 5, 4 * KIB)
    expected = [
        StripeLayout(0, ((1,), (2,), (3,)), 4, 0),
        StripeLayout(1, ((0,), (1,), (2,)), 3, 4),
        StripeLayout(2, ((4,), (0,), (1,)), 2, 3),
        StripeLayout(3, ((3,), (4,), (0,)), 1, 2),
        StripeLayout(4, ((2,), (3,), (4,)), 0, 1),
    ]
    assert [geometry.layout(stripe) for stripe in range(5)] == expected


def test_mirror_and_stripe_layouts() -> None:
    assert Geometry(Level.RAID0, 3, 4 * KIB).layout(7) == StripeLayout(
        7, ((0,), (1,), (2,)), None, None
    )
    assert Geometry(Level.RAID1, 3, 4 * KIB).layout(2) == StripeLayout(2, ((0, 1, 2),), None, None)
    assert Geometry(Level.RAID10, 6, 4 * KIB).layout(5) == StripeLayout(
        5, ((0, 1), (2, 3), (4, 5)), None, None
    )


@pytest.mark.parametrize(
    ("level", "members"),
    [(Level.RAID0, n) for n in (2, 5)]
    + [(Level.RAID5, n) for n in (3, 4, 7)]
    + [(Level.RAID6, n) for n in (4, 5, 9)],
)
def test_every_member_used_once_per_stripe(level: Level, members: int) -> None:
    geometry = Geometry(level, members, 4 * KIB)
    for stripe in range(3 * members):
        layout = geometry.layout(stripe)
        used = [member for holders in layout.data for member in holders]
        used += [member for member in (layout.p, layout.q) if member is not None]
        assert sorted(used) == list(range(members)), layout


@pytest.mark.parametrize(
    ("level", "members", "data_strips", "tolerance"),
    [
        (Level.RAID0, 4, 4, 0),
        (Level.RAID1, 3, 1, 2),
        (Level.RAID5, 5, 4, 1),
        (Level.RAID6, 6, 4, 2),
        (Level.RAID10, 8, 4, 1),
    ],
)
def test_counts_per_level(level: Level, members: int, data_strips: int, tolerance: int) -> None:
    geometry = Geometry(level, members, 8 * KIB)
    assert geometry.data_strips == data_strips
    assert geometry.tolerance == tolerance
    assert geometry.stripe_data_size == data_strips * 8 * KIB


def test_level_given_as_int() -> None:
    geometry = Geometry(6, 4, 4 * KIB)
    assert geometry.level is Level.RAID6
    assert geometry == Geometry(Level.RAID6, 4, 4 * KIB)


@pytest.mark.parametrize(
    ("level", "members", "message"),
    [
        (Level.RAID0, 1, r"^RAID0 needs at least 2 members; got 1$"),
        (Level.RAID1, 1, r"^RAID1 needs at least 2 members; got 1$"),
        (Level.RAID5, 2, r"^RAID5 needs at least 3 members; got 2$"),
        (Level.RAID6, 3, r"^RAID6 needs at least 4 members; got 3$"),
        (Level.RAID6, 258, r"^RAID6 takes at most 257 members .*; got 258$"),
        (Level.RAID10, 2, r"^RAID10 needs an even number of members, at least 4; got 2$"),
        (Level.RAID10, 5, r"^RAID10 needs an even number of members, at least 4; got 5$"),
    ],
)
def test_member_count_rejected(level: Level, members: int, message: str) -> None:
    with pytest.raises(GeometryError, match=message):
        Geometry(level, members, 4 * KIB)


def test_largest_raid6_accepted() -> None:
    assert Geometry(Level.RAID6, 257, 4 * KIB).data_strips == 255


@pytest.mark.parametrize("strip_size", [0, 512, 4095, 6144, 8193, -4096])
def test_strip_size_rejected(strip_size: int) -> None:
    message = rf"^strip size must be a power of two of at least 4096 bytes; got {strip_size}$"
    with pytest.raises(GeometryError, match=message):
        Geometry(Level.RAID5, 4, strip_size)


@pytest.mark.parametrize("strip_size", [4 * KIB, 8 * KIB, 512 * KIB, 16 * KIB * KIB])
def test_strip_size_accepted(strip_size: int) -> None:
    assert Geometry(Level.RAID5, 4, strip_size).strip_size == strip_size


@pytest.mark.parametrize("level", [2, 3, 4, 7, -1])
def test_unknown_level_rejected(level: int) -> None:
    with pytest.raises(
        GeometryError, match=rf"^RAID level must be one of 0, 1, 5, 6, 10; got {level}$"
    ):
        Geometry(level, 4, 4 * KIB)


def test_geometry_error_is_value_error() -> None:
    with pytest.raises(ValueError, match="RAID5 needs"):
        Geometry(Level.RAID5, 1, 4 * KIB)


@pytest.mark.parametrize(
    ("level", "members"),
    [(Level.RAID0, 3), (Level.RAID1, 2), (Level.RAID5, 4), (Level.RAID6, 6), (Level.RAID10, 6)],
)
def test_locate_walks_logical_strips(level: Level, members: int) -> None:
    geometry = Geometry(level, members, 4 * KIB)
    for logical in range(4 * members):
        location = geometry.locate(logical)
        stripe, index = divmod(logical, geometry.data_strips)
        assert location == StripLocation(stripe, index, geometry.layout(stripe).data[index])


def test_raid5_consecutive_strips_on_consecutive_members() -> None:
    """Left-symmetric placement: logical strip s + 1 sits on the member after strip s."""
    geometry = Geometry(Level.RAID5, 5, 4 * KIB)
    members = [geometry.locate(logical).members[0] for logical in range(40)]
    assert all((b - a) % 5 == 1 for a, b in itertools.pairwise(members))


def test_negative_numbers_rejected() -> None:
    geometry = Geometry(Level.RAID5, 4, 4 * KIB)
    with pytest.raises(GeometryError, match="stripe number must be 0 or more; got -1"):
        geometry.layout(-1)
    with pytest.raises(GeometryError, match="logical strip number must be 0 or more; got -3"):
        geometry.locate(-3)


@pytest.mark.parametrize(
    ("level", "members"),
    [(Level.RAID0, 3), (Level.RAID1, 3), (Level.RAID5, 4), (Level.RAID6, 5), (Level.RAID10, 6)],
)
def test_survives_every_pattern(level: Level, members: int) -> None:
    geometry = Geometry(level, members, 4 * KIB)
    for count in range(members + 1):
        for missing in itertools.combinations(range(members), count):
            if level is Level.RAID10:
                expected = not any(
                    2 * i in missing and 2 * i + 1 in missing for i in range(members // 2)
                )
            else:
                expected = count <= geometry.tolerance
            assert geometry.survives(missing) == expected, missing


def test_survives_ignores_duplicates() -> None:
    assert Geometry(Level.RAID5, 4, 4 * KIB).survives([2, 2, 2])


def test_survives_rejects_unknown_member() -> None:
    with pytest.raises(GeometryError, match=r"member index must be in 0\.\.3; got 4"):
        Geometry(Level.RAID5, 4, 4 * KIB).survives([4])


def test_strip_members_in_logical_order() -> None:
    assert Geometry(Level.RAID6, 5, 4 * KIB).layout(1).strip_members() == (0, 1, 2, 3, 4)
    assert Geometry(Level.RAID6, 5, 4 * KIB).layout(2).strip_members() == (4, 0, 1, 2, 3)
    assert Geometry(Level.RAID5, 4, 4 * KIB).layout(1).strip_members() == (3, 0, 1, 2)
    assert Geometry(Level.RAID1, 3, 4 * KIB).layout(9).strip_members() == (0, 1, 2)
    assert Geometry(Level.RAID10, 4, 4 * KIB).layout(9).strip_members() == (0, 1, 2, 3)
    assert Geometry(Level.RAID0, 2, 4 * KIB).layout(9).strip_members() == (0, 1)
