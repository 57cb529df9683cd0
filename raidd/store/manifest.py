"""Paged manifest: a commit's history in sealed pages under a small top manifest.

Every commit adds references (its catalog delta, its index segment, and any
other listed kind) to the end of the history. The top manifest lists the
history in commit order, oldest first, with runs of older references
replaced by manifest pages. A page is an immutable metadata object that
contains `page_refs` references of one height. Pages of height 1 list
objects, and pages of height h + 1 list pages of height h.

Folding works like carrying in a counter of base `page_refs`. Whenever a
run of equal-height entries in the top reaches `page_refs`, its oldest
`page_refs` entries are sealed into one page of the next height, in their
place. So each run in the top is shorter than `page_refs`, and for a
history of n references the top contains at most (page_refs - 1) * (H + 1)
of them, with H = floor(log_page_refs(n)). A commit writes the top plus,
amortized, H page entries per new reference: O(log n) bytes, against O(n)
for a flat list. Pages never change once written, so every commit stays
copy-on-write: an older top still finds all of its pages intact.
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from raidd.store.objects import (
    KIND_MANIFEST,
    KIND_PAGE,
    Manifest,
    MetadataRef,
    encode_manifest,
    encode_page,
)

if TYPE_CHECKING:
    from raidd.store.packing import Packer
    from raidd.store.store import Store

__all__ = ["DEFAULT_PAGE_REFS", "expand", "fold", "history", "top_bound", "write_top"]

# References per page. With about 60 bytes per reference a page is about
# 2 KiB, and a top over 100,000 commits (200,000 references) stays under 10 KiB.
DEFAULT_PAGE_REFS = 32

# Seals groups of (height, references) as pages; returns one page reference per group.
SealPages = Callable[[list[tuple[int, list[MetadataRef]]]], list[MetadataRef]]
ReadPage = Callable[[MetadataRef], Sequence[MetadataRef]]


def _runs(refs: Sequence[MetadataRef]) -> Iterator[tuple[int, int]]:
    """Yield (start, end) of each maximal run of equal height."""
    start = 0
    for index in range(1, len(refs) + 1):
        if index == len(refs) or refs[index].height != refs[start].height:
            yield start, index
            start = index


def fold(refs: Sequence[MetadataRef], page_refs: int, seal: SealPages) -> list[MetadataRef]:
    """Seal full runs into pages until every run in the list is shorter than `page_refs`.

    Each pass seals every full group it finds with one call of `seal`, so
    a cascade over h heights costs h calls (one stripe flush each).

    Raises:
        ValueError: `page_refs` below 2.
    """
    if page_refs < 2:
        raise ValueError(f"a manifest page holds at least 2 references, got {page_refs}")
    items = list(refs)
    while True:
        groups: list[tuple[int, int]] = []
        for start, end in _runs(items):
            full = (end - start) // page_refs
            groups.extend(
                (start + n * page_refs, start + (n + 1) * page_refs) for n in range(full)
            )
        if not groups:
            return items
        pages = seal([(items[start].height + 1, items[start:end]) for start, end in groups])
        for (start, end), page in reversed(list(zip(groups, pages, strict=True))):
            items[start:end] = [page]


def expand(refs: Sequence[MetadataRef], read_page: ReadPage) -> Iterator[MetadataRef]:
    """Yield every reference under `refs` in commit order, each page before its contents."""
    stack = [iter(refs)]
    while stack:
        ref = next(stack[-1], None)
        if ref is None:
            stack.pop()
            continue
        yield ref
        if ref.kind == KIND_PAGE:
            stack.append(iter(read_page(ref)))


def history(refs: Sequence[MetadataRef], read_page: ReadPage) -> Iterator[MetadataRef]:
    """Yield the objects under `refs` in commit order, pages left out."""
    return (ref for ref in expand(refs, read_page) if ref.kind != KIND_PAGE)


def top_bound(history_length: int, page_refs: int) -> int:
    """Return the most references a folded top holds for a history of that length.

    A page of height h covers page_refs**h objects, so the top holds heights
    0 to H with page_refs**H <= history_length, each run shorter than page_refs.
    """
    if history_length < 1:
        return 0
    height = 0
    while page_refs ** (height + 1) <= history_length:
        height += 1
    return (page_refs - 1) * (height + 1)


def write_top(
    store: "Store",
    packers: Sequence["Packer"],
    sequence: int,
    refs: list[MetadataRef],
    reuse: Mapping[tuple[MetadataRef, ...], MetadataRef],
) -> tuple[Manifest, MetadataRef]:
    """Fold a history into pages, write its top manifest, return the top and its reference.

    Args:
        store: the store whose metadata key seals the objects.
        packers: one per copy; every object already listed is flushed.
        sequence: the commit the top and its new pages belong to.
        refs: the whole top to fold: earlier top or history, then this commit's.
        reuse: existing pages by what they list, taken instead of a new page
            for the same group (gc keeps their stripes).
    """

    def seal(groups: list[tuple[int, list[MetadataRef]]]) -> list[MetadataRef]:
        kept = [reuse.get(tuple(group)) for _, group in groups]
        written = {
            index: store.write_metadata(packers, KIND_PAGE, encode_page(sequence, height, group))
            for index, ((height, group), page) in enumerate(zip(groups, kept, strict=True))
            if page is None
        }
        if written:
            for packer in packers:
                packer.flush()
        pages = []
        for index, (height, _) in enumerate(groups):
            page = kept[index]
            if page is None:
                page_id, length, at = written[index]
                page = MetadataRef(
                    KIND_PAGE, page_id, length, tuple(p.resolve() for p in at), height
                )
            pages.append(page)
        return pages

    top = Manifest(sequence, tuple(fold(refs, store.manifest_page_refs, seal)))
    top_id, length, at = store.write_metadata(
        packers, KIND_MANIFEST, encode_manifest(top), start_fresh=True
    )
    for packer in packers:
        packer.flush()
    return top, MetadataRef(KIND_MANIFEST, top_id, length, tuple(p.resolve() for p in at))
