"""Reconstruction and verification of one stripe, for every level.

A stripe is passed as its strips in logical order:

* RAID0: D_0 .. D_{k-1} (no redundancy);
* RAID1: copy_0 .. copy_{n-1} (n equal copies);
* RAID10: D_0 copy a, D_0 copy b, D_1 copy a, ... (member order, pairs);
* RAID5: D_0 .. D_{k-1}, P with P = D_0 + ... + D_{k-1};
* RAID6: D_0 .. D_{k-1}, P, Q with Q = sum of g^i * D_i over GF(2^8).

The algebra of each RAID5 and RAID6 case is stated in ``parity.raid5`` and
``parity.raid6`` (after H. Peter Anvin, "The mathematics of RAID-6"); this
module picks the case from the pattern of missing strips.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from parity import raid6
from parity.errors import TooManyErasures
from parity.geometry import Level, check_member_count, to_level
from parity.raid5 import xor_strips
from parity.strips import Buffer, U8Array, as_strip, check_same_size

TOLERANCE = {Level.RAID0: 0, Level.RAID5: 1, Level.RAID6: 2, Level.RAID10: 1}
"""Worst-case erasures each level rebuilds; RAID1 rebuilds all but one copy."""


def _views(strips: Sequence[Buffer | None]) -> list[U8Array | None]:
    """View the present strips and check that they share one length."""
    views = [
        None if strip is None else as_strip(strip, f"strip {i}") for i, strip in enumerate(strips)
    ]
    check_same_size([view for view in views if view is not None])
    return views


def reconstruct(level: Level | int, strips: Sequence[Buffer | None]) -> list[U8Array]:
    """Fill in the missing strips of one stripe.

    Args:
        level: the stripe's RAID level.
        strips: the stripe's strips in logical order (see the module
            docstring); None marks a missing strip.

    Returns:
        Every strip of the stripe in the same order: present strips as views
        of the caller's buffers, missing ones as new arrays.

    Raises:
        GeometryError: an invalid level, strip count for the level, or strips
            of different sizes.
        TooManyErasures: more strips are missing than the level can rebuild
            (RAID10: both copies of one data strip); no bytes are returned.
        TypeError: a strip is not a supported buffer.
    """
    level = to_level(level)
    check_member_count(level, len(strips))
    views = _views(strips)
    missing = [i for i, view in enumerate(views) if view is None]
    if not missing:
        return [view for view in views if view is not None]
    if level is Level.RAID1:
        return _rebuild_copies(views, missing, len(views) - 1)
    if level is Level.RAID10:
        rebuilt: list[U8Array] = []
        for pair in range(0, len(views), 2):
            pair_missing = [i - pair for i in missing if pair <= i < pair + 2]
            try:
                rebuilt += _rebuild_copies(views[pair : pair + 2], pair_missing, 1)
            except TooManyErasures:
                raise TooManyErasures(
                    missing, 1, f"both copies of data strip {pair // 2} are missing"
                ) from None
        return rebuilt
    if len(missing) > TOLERANCE[level]:
        raise TooManyErasures(missing, TOLERANCE[level])
    if level is Level.RAID5:
        return _rebuild_raid5(views, missing[0])
    return _rebuild_raid6(views, missing)


def _rebuild_copies(
    views: list[U8Array | None], missing: list[int], tolerance: int
) -> list[U8Array]:
    """Fill missing mirror copies with copies of the first present one."""
    present = [view for view in views if view is not None]
    if not present:
        raise TooManyErasures(missing, tolerance)
    source = present[0]
    return [source.copy() if view is None else view for view in views]


def _rebuild_raid5(views: list[U8Array | None], lost: int) -> list[U8Array]:
    """Rebuild strip ``lost`` (data or P) as the XOR of all the others."""
    others = [view for view in views if view is not None]
    rebuilt = xor_strips(others, np.empty(others[0].size, dtype=np.uint8))
    return [rebuilt if view is None else view for view in views]


def _rebuild_raid6(views: list[U8Array | None], missing: list[int]) -> list[U8Array]:
    """Rebuild up to two strips of a RAID6 stripe [D_0 .. D_{k-1}, P, Q]."""
    k = len(views) - 2
    size = next(view.size for view in views if view is not None)
    data = views[:k]
    p, q = views[k], views[k + 1]
    lost_data = [i for i in missing if i < k]
    out = list(views)

    if len(lost_data) == 2:
        # D_y = (g^x + g^y)^(-1) * (Q + Q_s + g^x * dP) and D_x = dP + D_y,
        # where dP = P + P_s (P_s, Q_s: P and Q of the surviving data strips).
        assert p is not None and q is not None
        x, y = lost_data
        x_out = np.empty(size, dtype=np.uint8)
        y_out = np.empty(size, dtype=np.uint8)
        raid6.recover_two_data(data, p, q, x, y, x_out, y_out)
        out[x], out[y] = x_out, y_out
    elif len(lost_data) == 1 and p is not None:
        # D_x = P + P_s, whether Q is present or not.
        others = [view for view in data if view is not None]
        out[lost_data[0]] = xor_strips([p, *others], np.empty(size, dtype=np.uint8))
    elif len(lost_data) == 1:
        # P is lost too: Q + Q_s = g^x * D_x, so D_x = g^(-x) * (Q + Q_s).
        assert q is not None
        x = lost_data[0]
        out[x] = raid6.recover_data_from_q(data, q, x, np.empty(size, dtype=np.uint8))

    # With every data strip known, a lost P or Q is computed again.
    full_data = [view for view in out[:k] if view is not None]
    if p is None or q is None:
        p_new, q_new = raid6.encode_pq(full_data)
        out[k] = p if p is not None else p_new
        out[k + 1] = q if q is not None else q_new
    return [view for view in out if view is not None]


@dataclass(frozen=True)
class Verification:
    """Result of checking a full stripe's redundancy.

    Attributes:
        ok: P (and Q) match the data; for RAID1 and RAID10, every copy is equal.
            Always True for RAID0, which has nothing to check.
        p_ok: P matches the data (RAID1 and RAID10: same as ``ok``).
        q_ok: Q matches the data; None for levels without Q.
        bad_index: RAID6 only: logical index of the single corrupted strip
            (0..k-1 data, k for P, k + 1 for Q); None when ok or not locatable.
        multiple: RAID6 only: more than one strip is wrong (no single strip
            explains the syndromes).
    """

    ok: bool
    p_ok: bool
    q_ok: bool | None
    bad_index: int | None
    multiple: bool


def verify(level: Level | int, strips: Sequence[Buffer]) -> Verification:
    """Check whether a full stripe's parity or copies match its data.

    Args:
        level: the stripe's RAID level.
        strips: every strip of the stripe, in the logical order of
            ``reconstruct``.

    Returns:
        The Verification. For RAID6 a single corrupted strip is located from
        the syndromes, z = log_g(dQ / dP).

    Raises:
        GeometryError: an invalid level, strip count, or strips of different sizes.
        TypeError: a strip is None or not a supported buffer.
    """
    level = to_level(level)
    check_member_count(level, len(strips))
    for i, strip in enumerate(strips):
        if strip is None:
            raise TypeError(f"verify needs every strip; strip {i} is None, reconstruct it first")
    views = [view for view in _views(strips) if view is not None]
    if level is Level.RAID0:
        return Verification(True, True, None, None, False)
    if level in (Level.RAID1, Level.RAID10):
        group = len(views) if level is Level.RAID1 else 2
        equal = all(
            np.array_equal(views[start], views[i])
            for start in range(0, len(views), group)
            for i in range(start + 1, start + group)
        )
        return Verification(equal, equal, None, None, False)
    k = len(views) - 1 if level is Level.RAID5 else len(views) - 2
    if level is Level.RAID5:
        p_ok = np.array_equal(
            xor_strips(views[:k], np.empty(views[0].size, dtype=np.uint8)), views[k]
        )
        return Verification(p_ok, p_ok, None, None, False)
    d_p, d_q = raid6.syndromes(views[:k], views[k], views[k + 1])
    p_ok = not d_p.any()
    q_ok = not d_q.any()
    if p_ok and q_ok:
        return Verification(True, True, True, None, False)
    bad = raid6.locate_corruption(d_p, d_q, k)
    return Verification(False, p_ok, q_ok, bad, bad is None)
