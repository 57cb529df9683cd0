"""Retention (`forget`), garbage collection (`gc`) and consistency checks (`check`).

forget applies each root's retention policy and records the forgotten
commits as Forget records of a new commit, so that an index rebuilt from
the array forgets the same commits.

gc frees space in one copy-on-write commit:

1. A chunk object is live when a version in the catalog references it;
   metadata objects are live when the current manifest or one of its pages
   lists them. The segments a base segment replaces are dropped.
2. A live object with a piece in a sparse stripe (live bytes under half the
   stripe) is copied, already sealed, to a new stripe.
3. One commit then records a base index segment with every live chunk's
   location and a manifest of the kept objects (moved ones at their new
   place: deltas, audit objects, any listed kind) with every page sealed
   anew, and frees every allocated stripe left with no live byte. Until
   that commit is durable nothing refers to the copies, and freed stripes
   are written again only two commits later, so a crash at any step leaves
   the previous commit intact.

gc may use all the stripes the engine keeps in reserve (backups use none of
them, forget and audit-only commits at most half), so it runs on a full
array. Before it writes, it bounds the stripes its commit needs
(raidd.store.gc_space); when compaction would not fit, it frees only the
stripes with no live byte. When even that does not fit, it fails with the
number of stripes it needs.

check compares catalog, object index and allocation map, opens every
metadata object (manifest pages included), verifies the audit chain, and
with `read_data` every chunk object. It reports and never repairs.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from raidd.array import Reserve
from raidd.array.allocmap import FLAG_DATA
from raidd.errors import ArrayFullError, IntegrityError
from raidd.store.catalog_format import Forget, decode_delta
from raidd.store.compress import decode_chunk
from raidd.store.gc_space import gc_stripes_needed
from raidd.store.manifest import expand, fold
from raidd.store.objects import (
    KIND_CHUNK,
    KIND_DELTA,
    KIND_MANIFEST,
    KIND_PAGE,
    KIND_SEGMENT,
    OBJECT_HEADER,
    IndexEntry,
    Location,
    MetadataRef,
    decode_segment,
    parse_header,
)
from raidd.store.packing import Packer, PendingLocation, read_location
from raidd.store.recovery import recover_object
from raidd.store.retention import CommitPoint, apply_policy
from raidd.store.store import Store

__all__ = ["CheckResult", "ForgetResult", "GcResult", "check", "forget", "gc"]

log = structlog.get_logger(__name__)

SPARSE_FRACTION = 0.5


@dataclass
class ForgetResult:
    """Per root: the kept commits with the rules that kept them, and the forgotten ones."""

    sequence: int | None = None
    roots: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the result as JSON."""
        return {"commit": self.sequence, "roots": self.roots}


def forget(store: Store, *, dry_run: bool = False, now_ns: int | None = None) -> ForgetResult:
    """Apply every watched root's retention policy; record the result as one commit."""
    result = ForgetResult()
    records = []
    watches = store.config.watches if store.config is not None else ()
    for watch in watches:
        commits = store.catalog.commits(root=watch.name)
        if not commits or watch.retention.keeps_everything:
            continue
        points = [CommitPoint(c.sequence, c.time_ns) for c in commits]
        decision = apply_policy(points, watch.retention, now_ns=now_ns)
        result.roots[watch.name] = {
            "keep": {str(k): list(v) for k, v in sorted(decision.keep.items())},
            "forget": list(decision.forget),
        }
        if decision.forget:
            records.append(Forget(watch.name, decision.forget))
    if dry_run or not records:
        return result
    delta = store.catalog.next_commit([r.root for r in records], now_ns)
    delta = type(delta)(delta.sequence, delta.parent, delta.time_ns, delta.roots, tuple(records))
    try:
        store.commit(delta, Packer(store.array, reserve=Reserve.PART), [])
    except ArrayFullError as error:
        raise ArrayFullError(
            f"{error}. forget itself could not be recorded: forget may use half the "
            "reserve, and the rest stays for gc. Run `raidctl gc` (`raidd gc` while the "
            "daemon is stopped) to free the stripes that no commit needs, then forget again"
        ) from error
    result.sequence = delta.sequence
    return result


@dataclass
class GcResult:
    """What gc found and did (or would do, in a dry run)."""

    dead_chunks: int = 0
    moved_objects: int = 0
    freed_stripes: list[int] = field(default_factory=list)
    stripes_before: int = 0
    stripes_needed: int = 0
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        """Return the result as JSON."""
        return {
            "dead_chunks": self.dead_chunks,
            "moved_objects": self.moved_objects,
            "freed_stripes": len(self.freed_stripes),
            "stripes_before": self.stripes_before,
            "stripes_needed": self.stripes_needed,
            "dry_run": self.dry_run,
        }


def data_stripes(store: Store) -> set[int]:
    """Return the stripes the allocation map marks as holding data."""
    flags = store.array.map.entries["flags"]
    return {int(s) for s in np.flatnonzero((flags & FLAG_DATA) != 0)}


def _metadata_refs(
    store: Store, contents: dict[MetadataRef, tuple[MetadataRef, ...]] | None = None
) -> list[MetadataRef]:
    """Return every metadata object the root reaches: pages, listed objects, the top.

    With `contents`, also record what each page lists.
    """

    def read(page: MetadataRef) -> tuple[MetadataRef, ...]:
        refs = store.read_page(page)
        if contents is not None:
            contents[page] = refs
        return refs

    found = list(expand(store.manifest.refs, read))
    if store.root is not None:
        found.append(store.root.manifest)
    return found


PageReuse = dict[tuple[MetadataRef, ...], MetadataRef]


def _reusable_pages(
    store: Store,
    kept_refs: list[MetadataRef],
    moving: set[int],
    contents: dict[MetadataRef, tuple[MetadataRef, ...]],
    sparse: set[int],
) -> PageReuse:
    """Return the current pages that the gc commit's fold will list again, by contents.

    The fold runs here on the new history, with stand-ins for the objects
    that move and for the base segment, because their locations are not
    known yet. So a page is kept exactly when the commit's own fold
    produces the same group. A page in a sparse stripe is written anew, so that its stripe
    can be freed.
    """
    candidates = {
        refs: page
        for page, refs in contents.items()
        if not any(p.stripe in sparse for c in page.copies for p in c)
    }
    stand_ins = [
        MetadataRef(ref.kind, ref.object_id, ref.length, ()) if i in moving else ref
        for i, ref in enumerate(kept_refs)
    ]
    stand_ins.append(MetadataRef(KIND_SEGMENT, bytes(32), 0, ()))
    reused: PageReuse = {}

    def seal(groups: list[tuple[int, list[MetadataRef]]]) -> list[MetadataRef]:
        pages = []
        for height, group in groups:
            page = candidates.get(tuple(group))
            if page is None:
                page = MetadataRef(KIND_PAGE, len(reused).to_bytes(32, "little"), 0, (), height)
            else:
                reused[tuple(group)] = page
            pages.append(page)
        return pages

    fold(stand_ins, store.manifest_page_refs, seal)
    return reused


def _live_bytes(pieces: Iterable[Location]) -> dict[int, int]:
    totals: dict[int, int] = {}
    for location in pieces:
        for piece in location:
            totals[piece.stripe] = totals.get(piece.stripe, 0) + piece.length
    return totals


@dataclass
class _GcPlan:
    """The plan of one gc commit: objects moved, pages reused, stripes freed and needed."""

    moving_chunks: list[IndexEntry]
    moving_refs: set[int]
    reuse: PageReuse
    freed: list[int]
    needed: int


def _plan_gc(
    store: Store,
    live: list[IndexEntry],
    kept_refs: list[MetadataRef],
    contents: dict[MetadataRef, tuple[MetadataRef, ...]],
    totals: dict[int, int],
    allocated: set[int],
    compact: bool,
) -> _GcPlan:
    """Plan a gc commit; without `compact`, nothing moves and only empty stripes are freed."""
    limit = store.array.stripe_data_size * SPARSE_FRACTION
    sparse = {s for s in allocated if 0 < totals.get(s, 0) < limit} if compact else set()
    moving_chunks = [e for e in live if any(p.stripe in sparse for p in e.pieces)]
    moving_refs = {
        i
        for i, ref in enumerate(kept_refs)
        if any(p.stripe in sparse for c in ref.copies for p in c)
    }
    reuse = _reusable_pages(store, kept_refs, moving_refs, contents, sparse)
    moving_ids = {e.object_id for e in moving_chunks}
    staying = [e.pieces for e in live if e.object_id not in moving_ids]
    staying += [c for i, ref in enumerate(kept_refs) if i not in moving_refs for c in ref.copies]
    staying += [c for page in reuse.values() for c in page.copies]
    kept = _live_bytes(staying)
    freed = sorted(s for s in allocated if kept.get(s, 0) == 0)
    moved_bytes = sum(e.length for e in moving_chunks)
    needed = gc_stripes_needed(store, live, moved_bytes, kept_refs, moving_refs)
    return _GcPlan(moving_chunks, moving_refs, reuse, freed, needed)


def _too_full_for_gc(store: Store, plan: _GcPlan, live: int, free: int) -> ArrayFullError:
    name = store.array.name or store.array.uuid
    return ArrayFullError(
        f"array {name} is too full for gc: its commit (an index of {live} chunks, pages "
        f"and map) needs up to {plan.needed} stripes and {free} are free, the reserve "
        f"of {store.array.reserve_stripes} included. raidd cannot grow an array or move "
        "it to bigger members; copy what you need out with `raidd restore`, then create "
        "a larger array with `raidd create` and back up into it"
    )


def gc(store: Store, *, dry_run: bool = False) -> GcResult:
    """Free stripes with no live object, after moving live objects out of sparse ones.

    gc may use the whole reserve. When its commit with compaction would not
    fit the free stripes, it frees only the stripes that hold no live byte
    and moves nothing (the same commit with an empty move set).

    Raises:
        ArrayFullError: even that commit does not fit the free stripes.
    """
    referenced = store.catalog.referenced_chunks()
    live: list[IndexEntry] = []
    dead = 0
    for entry in store.objects.entries():
        if entry.object_id in referenced:
            live.append(entry)
        else:
            dead += 1
    contents: dict[MetadataRef, tuple[MetadataRef, ...]] = {}
    metadata = _metadata_refs(store, contents)
    # Segments and the top manifest are written anew by the gc commit, pages
    # too unless they list the same objects again; every other listed object
    # (deltas, and any further kind) is kept.
    rewritten = (KIND_SEGMENT, KIND_PAGE, KIND_MANIFEST)
    kept_refs = [ref for ref in metadata if ref.kind not in rewritten]
    allocated = data_stripes(store)
    result = GcResult(dead_chunks=dead, stripes_before=len(allocated), dry_run=dry_run)
    metadata_locations = [copy for ref in metadata for copy in ref.copies]
    totals = _live_bytes([e.pieces for e in live] + metadata_locations)
    plan = _plan_gc(store, live, kept_refs, contents, totals, allocated, compact=True)
    free = store.array.free_stripe_count()
    if plan.needed > free:
        plain = _plan_gc(store, live, kept_refs, contents, totals, allocated, compact=False)
        if plain.needed > free and not dry_run:
            raise _too_full_for_gc(store, plain, len(live), free)
        log.warning("gc_without_compaction", needed=plan.needed, free=free)
        plan = plain
    result.moved_objects = len(plan.moving_chunks) + len(plan.moving_refs)
    result.freed_stripes = plan.freed
    result.stripes_needed = plan.needed
    if dry_run or (not plan.freed and not dead):
        return result
    _commit_gc(store, plan, live, kept_refs)
    log.info("gc_done", freed=len(plan.freed), moved=result.moved_objects, dead_chunks=dead)
    return result


def _commit_gc(
    store: Store, plan: _GcPlan, live: list[IndexEntry], kept_refs: list[MetadataRef]
) -> None:
    """Copy the moving objects, then write the gc commit (a failure frees what it wrote)."""
    packer = Packer(store.array, reserve=Reserve.ALL)
    try:
        moved: dict[bytes, Any] = {}
        for entry in plan.moving_chunks:
            moved[entry.object_id] = packer.add(_read_sealed(store, KIND_CHUNK, entry))
        # Moved metadata is packed together (first copies with the chunks), so
        # that it lands in dense stripes and stays put at the next gc.
        packers = store.metadata_packers(packer)
        placed = {i: _move_metadata(store, kept_refs[i], packers) for i in plan.moving_refs}
        for each in packers:
            each.flush()
    except BaseException:
        store.array.discard_uncommitted()
        raise
    for index, locations in placed.items():
        ref = kept_refs[index]
        kept_refs[index] = MetadataRef(
            ref.kind, ref.object_id, ref.length, tuple(p.resolve() for p in locations), ref.height
        )
    entries = [
        IndexEntry(e.object_id, e.length, moved[e.object_id].resolve())
        if e.object_id in moved
        else e
        for e in live
    ]
    store.commit(
        None,
        packer,
        entries,
        base=True,
        freed=plan.freed,
        history=kept_refs,
        reuse_pages=plan.reuse,
    )


def _read_sealed(store: Store, kind: int, entry: IndexEntry) -> bytes:
    """Return an object's stored bytes, authenticated; repaired first when they fail.

    gc copies objects still sealed, so it needs the stored bytes, not the
    plaintext that recover_object returns. recover_object rewrites the bad
    strips (gc runs on a writable array), so a second read gives them.
    """
    stored = read_location(store.array, entry.pieces)
    try:
        store.open_stored(kind, entry.object_id, stored)
        return stored
    except IntegrityError as error:
        log.warning("gc_object_bad", object_id=entry.object_id.hex()[:16], error=str(error))
    recover_object(store, kind, entry.object_id, entry.pieces)
    stored = read_location(store.array, entry.pieces)
    store.open_stored(kind, entry.object_id, stored)
    return stored


def _move_metadata(store: Store, ref: MetadataRef, packers: list[Packer]) -> list[PendingLocation]:
    """Add a sealed metadata object to the packers, one per copy (never sharing a stripe)."""
    stored = None
    for copy in ref.copies:
        try:
            stored = _read_sealed(store, ref.kind, IndexEntry(ref.object_id, ref.length, copy))
            break
        except IntegrityError as error:
            log.warning(
                "gc_metadata_copy_bad", object_id=ref.object_id.hex()[:16], error=str(error)
            )
    if stored is None:
        raise IntegrityError(f"metadata object {ref.object_id.hex()[:16]} is lost in every copy")
    return [packer.add(stored) for packer in packers[: len(ref.copies)]]


@dataclass
class CheckResult:
    """Errors (broken data or disagreement), warnings, and notes (degraded, space to reclaim)."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    objects_read: int = 0

    def to_json(self) -> dict[str, Any]:
        """Return the result as JSON."""
        return {
            "errors": self.errors,
            "warnings": self.warnings,
            "notes": self.notes,
            "objects_read": self.objects_read,
        }


def check(store: Store, *, read_data: bool = False) -> CheckResult:
    """Verify that catalog, object index and allocation agree; report, never repair."""
    result = CheckResult()
    allocated = data_stripes(store)
    try:
        metadata = _metadata_refs(store)
    except IntegrityError as error:
        # A lost page hides what it lists; nothing below can be compared.
        result.errors.append(f"the manifest cannot be walked: {error}")
        return result
    _check_metadata(metadata, store, result)
    on_array: dict[bytes, IndexEntry] = {}
    for ref in metadata:
        if ref.kind != KIND_SEGMENT:
            continue
        try:
            _, base, segment = decode_segment(bytes(store.read_metadata(ref)))
        except IntegrityError as error:
            result.errors.append(str(error))
            continue
        if base:
            on_array.clear()
        on_array.update((e.object_id, e) for e in segment)
    local = {e.object_id: e for e in store.objects.entries()}
    if local != on_array:
        result.errors.append(
            f"the local object index ({len(local)} chunks) differs from the index segments on "
            f"the array ({len(on_array)} chunks): delete the state directory to rebuild it"
        )
    referenced = store.catalog.referenced_chunks()
    for chunk_id in sorted(referenced - on_array.keys()):
        result.errors.append(f"chunk {chunk_id.hex()[:16]} is referenced but not stored")
    unreferenced = len(on_array.keys() - referenced)
    if unreferenced:
        result.notes.append(f"{unreferenced} chunks are not referenced; gc frees them")
    used: set[int] = set()
    for entry in on_array.values():
        for piece in entry.pieces:
            used.add(piece.stripe)
            if piece.stripe not in allocated:
                result.errors.append(
                    f"chunk {entry.object_id.hex()[:16]} lies in stripe {piece.stripe}, which "
                    "the allocation map does not mark as data"
                )
    for ref in metadata:
        for copy in ref.copies:
            used.update(piece.stripe for piece in copy)
    orphans = allocated - used
    if orphans:
        # Every commit leaves the previous manifest behind, so this is normal.
        result.notes.append(f"{len(orphans)} allocated stripes hold no live object; gc frees them")
    chain = store.verify_audit()
    if not chain.ok:
        assert chain.broken is not None
        result.errors.append(f"the audit chain is broken: {chain.broken['reason']}")
    if read_data:
        _read_every_chunk(store, on_array.values(), result)
    if store.array.degraded:
        # Exit 0 still: redundancy covers it, and the command warns on stderr.
        result.notes.append(f"array {store.array.uuid} is degraded")
    return result


def _check_metadata(metadata: list[MetadataRef], store: Store, result: CheckResult) -> None:
    for ref in metadata:
        for number, copy in enumerate(ref.copies, start=1):
            try:
                plain = store.read_object(ref.kind, ref.object_id, copy)
                result.objects_read += 1
            except IntegrityError as error:
                result.errors.append(f"copy {number} of {error}")
                continue
            if ref.kind == KIND_DELTA:
                try:
                    decode_delta(bytes(plain))
                except IntegrityError as error:
                    result.errors.append(str(error))


def _read_every_chunk(store: Store, entries: Iterable[IndexEntry], result: CheckResult) -> None:
    for entry in entries:
        try:
            stored = read_location(store.array, entry.pieces)
            parse_header(
                stored, KIND_CHUNK, entry.object_id, f"chunk {entry.object_id.hex()[:16]}"
            )
            if len(stored) != entry.length or entry.length < OBJECT_HEADER.size:
                raise IntegrityError(f"chunk {entry.object_id.hex()[:16]} has the wrong length")
            decode_chunk(bytes(store.open_stored(KIND_CHUNK, entry.object_id, stored)))
            result.objects_read += 1
        except IntegrityError as error:
            _recover_chunk(store, entry, error, result)


def _recover_chunk(
    store: Store, entry: IndexEntry, error: IntegrityError, result: CheckResult
) -> None:
    """Try the other readings of a chunk that failed; one that authenticates makes a note."""
    name = f"chunk {entry.object_id.hex()[:16]}"
    try:
        decode_chunk(bytes(recover_object(store, KIND_CHUNK, entry.object_id, entry.pieces)))
    except IntegrityError as lost:
        log.warning("check_chunk_lost", object_id=entry.object_id.hex()[:16], error=str(lost))
        result.errors.append(str(error))
        return
    result.objects_read += 1
    result.notes.append(
        f"{name} fails as read ({error}), but a reconstruction from the other members "
        "authenticates; a read on a writable open (the daemon's) rewrites the bad strips"
    )
