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
from parity.errors import GeometryError, TooManyErasures
from parity.geometry import Level, check_member_count, to_level
from parity.raid5 import xor_strips
from parity.strips import Buffer, U8Array, as_strip, check_same_size, output_strip

TOLERANCE = {Level.RAID0: 0, Level.RAID5: 1, Level.RAID6: 2, Level.RAID10: 1}
"""Worst-case erasures each level rebuilds; RAID1 rebuilds all but one copy."""


def _views(strips: Sequence[Buffer | None]) -> list[U8Array | None]:
    """View the present strips and check that they share one length."""
    views = [
        None if strip is None else as_strip(strip, f"strip {i}") for i, strip in enumerate(strips)
    ]
    check_same_size([view for view in views if view is not None])
    return views


def reconstruct(
    level: Level | int,
    strips: Sequence[Buffer | None],
    out: Sequence[U8Array | None] | None = None,
) -> list[U8Array]:
    """Fill in the missing strips of one stripe.

    Args:
        level: the stripe's RAID level.
        strips: the stripe's strips in logical order (see the module
            docstring); None marks a missing strip.
        out: optional arrays to write the rebuilt strips into, one entry per
            position of ``strips`` (1-D uint8, the strip size, not overlapping
            any strip). Entries at
            present positions, None entries, or no list at all mean the
            rebuilt strip is a new array. Reusing arrays saves the allocation
            and page faults when many stripes are rebuilt.

    Returns:
        Every strip of the stripe in the same order: present strips as views
        of the caller's buffers, missing ones as the ``out`` arrays or new arrays.

    Raises:
        GeometryError: an invalid level, strip count for the level, strips of
            different sizes, or an ``out`` array of the wrong size.
        TooManyErasures: more strips are missing than the level can rebuild
            (RAID10: both copies of one data strip); no bytes are returned.
        TypeError: a strip or an ``out`` array is not a supported buffer.
    """
    level = to_level(level)
    check_member_count(level, len(strips))
    views = _views(strips)
    missing = [i for i, view in enumerate(views) if view is None]
    if not missing:
        return [view for view in views if view is not None]
    if level is Level.RAID10:
        lost_pairs = [i // 2 for i in missing if i % 2 == 0 and i + 1 in missing]
        if lost_pairs:
            raise TooManyErasures(
                missing, 1, f"both copies of data strip {lost_pairs[0]} are missing"
            )
    elif level is Level.RAID1:
        if len(missing) == len(views):
            raise TooManyErasures(missing, len(views) - 1)
    elif len(missing) > TOLERANCE[level]:
        raise TooManyErasures(missing, TOLERANCE[level])
    if out is not None and len(out) != len(views):
        raise GeometryError(f"out must have one entry per strip ({len(views)}); got {len(out)}")
    size = next(view.size for view in views if view is not None)
    targets = {
        i: output_strip(None if out is None else out[i], size, f"out[{i}]") for i in missing
    }
    if level is Level.RAID1:
        _rebuild_copies(views, targets, 0, len(views))
    elif level is Level.RAID10:
        for pair in range(0, len(views), 2):
            _rebuild_copies(views, targets, pair, pair + 2)
    elif level is Level.RAID5:
        # Any one strip of [D_0 .. D_{k-1}, P] is the XOR of all the others.
        xor_strips([view for view in views if view is not None], targets[missing[0]])
    else:
        _rebuild_raid6(views, targets)
    return [targets[i] if view is None else view for i, view in enumerate(views)]


def _rebuild_copies(
    views: list[U8Array | None], targets: dict[int, U8Array], start: int, stop: int
) -> None:
    """Copy the first present mirror copy among ``views[start:stop]`` into the missing ones."""
    group = range(start, stop)
    source = next(views[i] for i in group if views[i] is not None)
    assert source is not None
    for i in group:
        if i in targets:
            np.copyto(targets[i], source)


def _rebuild_raid6(views: list[U8Array | None], targets: dict[int, U8Array]) -> None:
    """Rebuild up to two strips of a RAID6 stripe [D_0 .. D_{k-1}, P, Q] into ``targets``."""
    k = len(views) - 2
    data = views[:k]
    p, q = views[k], views[k + 1]
    lost_data = sorted(i for i in targets if i < k)

    if len(lost_data) == 2:
        # D_y = (g^x + g^y)^(-1) * (Q + Q_s + g^x * dP) and D_x = dP + D_y,
        # where dP = P + P_s (P_s, Q_s: P and Q of the surviving data strips).
        assert p is not None and q is not None
        x, y = lost_data
        raid6.recover_two_data(data, p, q, x, y, targets[x], targets[y])
    elif len(lost_data) == 1 and p is not None:
        # D_x = P + P_s, whether Q is present or not.
        others = [view for view in data if view is not None]
        xor_strips([p, *others], targets[lost_data[0]])
    elif len(lost_data) == 1:
        # P is lost too: Q + Q_s = g^x * D_x, so D_x = g^(-x) * (Q + Q_s).
        assert q is not None
        x = lost_data[0]
        raid6.recover_data_from_q(data, q, x, targets[x])

    # With every data strip known, a lost P or Q is computed again. encode_pq
    # always writes both, so the one still present gets a scratch array.
    if p is None or q is None:
        full_data = [targets[i] if view is None else view for i, view in enumerate(data)]
        raid6.encode_pq(full_data, p_out=targets.get(k), q_out=targets.get(k + 1))


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
