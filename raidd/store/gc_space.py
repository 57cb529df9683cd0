"""How many stripes a gc commit writes, bounded before it writes any.

gc runs on the reserve of a full array, so it must know beforehand that
its commit fits: a commit that runs out of stripes half way frees nothing.
Per metadata copy, the bound adds the moved objects, the base index
segment (which grows with the number of live chunks), the manifest pages
and the top, each packer flush ending a stripe. Then it adds the audit
objects and the map with every node written anew. It is an upper bound,
not a forecast.
"""

from collections.abc import Iterable, Sequence

from raidd.store.manifest import top_bound
from raidd.store.objects import (
    MANIFEST_HEADER,
    OBJECT_HEADER,
    PAGE_HEADER,
    PIECE,
    REF_HEAD,
    SEGMENT_ENTRY,
    SEGMENT_HEADER,
    U16,
    IndexEntry,
    MetadataRef,
)
from raidd.store.store import Store

__all__ = ["gc_stripes_needed"]

# The bytes sealing adds to an object beyond its header (nonce and tag), rounded up.
SEAL_OVERHEAD = 64
# An estimate of the most an audit record takes sealed, for the records that
# wait for a commit: the records are small JSON objects with path hashes.
AUDIT_RECORD_BOUND = 4096


def _stripes(size: int, stripe_size: int) -> int:
    return -(-size // stripe_size)


def _ref_size(ref: MetadataRef, extra_pieces: int) -> int:
    """Return a reference's bytes in a page, with `extra_pieces` more per copy."""
    copies = max(1, len(ref.copies))
    pieces = sum(len(copy) for copy in ref.copies) + extra_pieces * copies
    return REF_HEAD.size + copies * U16.size + pieces * PIECE.size


def gc_stripes_needed(
    store: Store,
    live: Sequence[IndexEntry],
    moved_chunk_bytes: int,
    kept_refs: Sequence[MetadataRef],
    moving_refs: Iterable[int],
) -> int:
    """Return an upper bound of the stripes a gc commit writes.

    Args:
        store: the open store.
        live: every chunk the base segment lists.
        moved_chunk_bytes: the stored bytes of the chunks gc copies.
        kept_refs: the metadata objects the new history keeps.
        moving_refs: indices into `kept_refs` of the objects gc copies.
    """
    size = store.array.stripe_data_size
    moving = set(moving_refs)
    moved_metadata = sum(kept_refs[i].length for i in moving)
    # A moved object lands in at most one more stripe than it spans now.
    segment = SEGMENT_HEADER.size + sum(
        SEGMENT_ENTRY.size + (len(e.pieces) + 1) * PIECE.size for e in live
    )
    segment_pieces = _stripes(segment, size) + 1
    refs = sum(_ref_size(ref, 1 if i in moving else 0) for i, ref in enumerate(kept_refs))
    refs += REF_HEAD.size + store.copies * (U16.size + segment_pieces * PIECE.size)
    history = len(kept_refs) + 2
    page_refs = store.manifest_page_refs
    # Folding lists every reference once per height, and a page at most page_refs.
    # The top lists up to page_refs - 1 objects of each height before it folds them
    # into a page, so pages exist only from page_refs objects on.
    height = 0
    while page_refs ** (height + 1) <= history:
        height += 1
    pages = height * refs + (height * history // max(1, page_refs - 1) + height) * (
        PAGE_HEADER.size + OBJECT_HEADER.size + SEAL_OVERHEAD
    )
    top = MANIFEST_HEADER.size + top_bound(history, page_refs) * _ref_size(
        MetadataRef(0, bytes(32), 0, ((),) * store.copies), 2 * segment_pieces
    )
    per_object = OBJECT_HEADER.size + SEAL_OVERHEAD
    # A packer fills every stripe before the next and splits objects, and each flush
    # ends a stripe: after the moved objects, after the segment, after each height of
    # pages, and after the top (which starts in a fresh stripe).
    moved = moved_metadata + len(moving) * per_object
    per_copy = (
        _stripes(segment + per_object, size)
        + _stripes(pages, size)
        + height
        + _stripes(top + per_object, size)
    )
    first = _stripes(moved_chunk_bytes + moved, size) + per_copy
    second = _stripes(moved, size) + per_copy if store.copies == 2 else 0
    audit = 0
    pending = len(store.audit.pending())
    if pending:
        audit = store.copies * (_stripes(pending * AUDIT_RECORD_BOUND, size) + 1)
    return first + second + audit + store.array.map_stripes_bound()
