"""The Store: an array, its keys, the sealed objects on it and the local indexes."""

import secrets
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

import crypto
from raidd.array import Array, Reserve, assemble
from raidd.config import Config, prepare_state_directory
from raidd.credentials import key_file_path
from raidd.errors import ArrayFullError, ConfigError, IntegrityError, KeyUnlockError, UsageError
from raidd.store.audit import AuditLog, write_batch
from raidd.store.catalog import CatalogIndex, CommitInfo
from raidd.store.catalog_format import CommitDelta, Version, decode_delta, encode_delta
from raidd.store.chunker import Chunker
from raidd.store.compress import Compressor
from raidd.store.manifest import DEFAULT_PAGE_REFS, expand, write_top
from raidd.store.object_index import ObjectIndex
from raidd.store.objects import (
    KIND_AUDIT,
    KIND_CHUNK,
    KIND_DELTA,
    KIND_PAGE,
    KIND_SEGMENT,
    LISTED_KINDS,
    IndexEntry,
    Location,
    Manifest,
    MetadataRef,
    MetadataRoot,
    associated_data,
    decode_manifest,
    decode_page,
    decode_root,
    decode_segment,
    encode_root,
    encode_segment,
    object_header,
    open_object,
)
from raidd.store.packing import Packer, PendingLocation, read_location

__all__ = ["Store", "UnlockKey"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class UnlockKey:
    """How to open a keyslot: a key file, or a passphrase (never logged)."""

    keyfile: Path | None = None
    passphrase: str | None = field(default=None, repr=False)


def _unlock(array: Array, key: UnlockKey) -> crypto.MasterKey:
    try:
        area = crypto.KeyslotArea.from_bytes(array.keyslot_area)
        if key.keyfile is not None:
            secret = crypto.read_keyfile(key.keyfile)
            try:
                return area.unlock_keyfile(secret)
            finally:
                secret[:] = bytes(len(secret))
        if key.passphrase is not None:
            return area.unlock_passphrase(key.passphrase)
    except crypto.KeyFileError as error:
        raise UsageError(str(error)) from error
    except crypto.CryptoError as error:
        raise KeyUnlockError(f"array {array.uuid}: {error}") from error
    raise UsageError("no key given: pass --keyfile or --passphrase-file, or set array.keyfile")


def config_key(config: Config) -> UnlockKey:
    """Return the configured key: the systemd credential first, then array.keyfile."""
    return UnlockKey(keyfile=key_file_path(config.array.keyfile, setting="array.keyfile"))


class Store:
    """The backup store of one array: sealed chunk and metadata objects plus a catalog.

    On the array: chunk objects (compressed chunk, sealed under the chunk
    subkey, named by the keyed chunk id) and metadata objects (catalog
    deltas, index segments, manifests and manifest pages; sealed under the
    metadata subkey, random ids), packed into stripes. Each commit writes
    its catalog delta, an index segment with the new chunk locations and a
    top manifest; the superblock's metadata root points at the top. The top
    lists the newest references and sealed manifest pages holding the older
    ones (raidd.store.manifest), so a commit writes O(log n) bytes of
    manifest however long the history. On RAID0 each metadata object is
    written twice, in different stripes. The members and a key therefore
    restore everything.

    In the state directory: the catalog index and the object index (SQLite),
    a cache rebuilt from the array when missing or not at the superblock's
    root. SQLite copies of watched databases are made there as well.

    API (stable; the daemon and the offline commands use it):

    - `Store.open(config, read_only=...)`, or `Store.open_members(paths,
      key, state_directory=None)` for disaster recovery (temporary index).
      Nothing is written to a member before a keyslot opens.
    - `backup(roots=None)` -> pipeline.BackupResult.
    - `snapshots(since_ns, limit)` -> [CommitInfo], newest first;
      `resolve_commit(at_ns, sequence)` -> CommitInfo;
      `ls(root, sequence, prefix)` -> versions.
    - `restore_entries(selections, sequence)` streams (RestoreEntry, data
      source) pairs, with selections from `restore.select(store, paths)`;
      `restore(target, paths, sequence, overwrite=, dry_run=)` writes them
      and returns restore.RestoreResult (lost files listed, not raised).
    - `forget(dry_run=)`, `gc(dry_run=)`, `check(read_data=)` return the
      result classes of raidd.store.maintenance.
    - `commit(delta, packer, entries, refs=...)`: the one way anything is
      committed; it takes the pending audit records along, and `refs` adds
      metadata objects of further listed kinds. `audit.append(record)`
      queues a record (any thread); `commit_audit()` commits pending
      records alone; `audit_records(...)` and `verify_audit()` read them
      (raidd.store.audit).
    - `history()` yields every listed metadata object in commit order
      (reading the manifest pages); `manifest_refs()` the pages as well;
      `audit_refs()` the audit objects alone.
    - `close()`; also a context manager.

    Not thread-safe as a whole: one operation at a time. backup() runs its
    own worker threads.
    """

    # References per manifest page; tests set it small to fold often.
    manifest_page_refs = DEFAULT_PAGE_REFS

    def __init__(
        self,
        array: Array,
        master: crypto.MasterKey,
        state_directory: Path,
        config: Config | None,
        temporary: bool,
    ) -> None:
        self.array = array
        self.config = config
        self.keys = crypto.derive_subkeys(master)
        master.wipe()
        self.state_directory = state_directory
        self._temporary = temporary
        self.chunker = Chunker(bytes(self.keys.chunker_seed.view()))
        self.compressor = Compressor()
        self.copies = 2 if array.level == 0 else 1
        self.lock = threading.Lock()
        stem = f"{array.uuid}"
        self.catalog_path = state_directory / f"catalog-{stem}.db"
        self.objects_path = state_directory / f"objects-{stem}.db"
        self.root: MetadataRoot | None = decode_root(array.metadata_root)
        self.manifest = Manifest(0, ())
        if self.root is not None:
            self.manifest = self._read_manifest(self.root.manifest)
        self.audit = AuditLog(self.keys.audit_path, self.keys.audit_chain)
        self.catalog, self.objects = self._open_indexes()

    # -- opening -----------------------------------------------------------------------

    @classmethod
    def open(
        cls, config: Config, *, read_only: bool = False, key: UnlockKey | None = None
    ) -> "Store":
        """Assemble the configured array, open a keyslot and load the store.

        Raises:
            ArrayBusyError: another process has claimed the array (writable opens only).
            KeyUnlockError: no keyslot opens with the key.
            ConfigError: the array's name differs from array.name.
        """
        key = key or config_key(config)
        array, master = cls._assemble_and_unlock(
            config.array.members, config.array.uuid, key, read_only
        )
        try:
            if config.array.name is not None and config.array.name != array.name:
                raise ConfigError(
                    f"array.name = {config.array.name!r} does not match the name "
                    f"{array.name!r} in the superblocks of array {array.uuid}"
                )
            try:
                state = prepare_state_directory(config.state.directory)
            except ConfigError as error:
                if not read_only:
                    raise
                # Reading needs no cache that lasts: a user without access to
                # the state directory gets a private index.
                log.warning("state_directory_unusable", error=str(error))
                state = Path(tempfile.mkdtemp(prefix="raidd-index-"))
                return cls(array, master, state, config, temporary=True)
            return cls(array, master, state, config, temporary=False)
        except BaseException:
            array.close()
            raise

    @classmethod
    def open_members(
        cls,
        members: Sequence[str],
        key: UnlockKey,
        *,
        state_directory: Path | None = None,
        read_only: bool = True,
        array_uuid: uuid.UUID | None = None,
    ) -> "Store":
        """Open a store from member paths and a key alone (disaster recovery).

        Without `state_directory` the indexes go into a temporary directory
        that close() removes.
        """
        array, master = cls._assemble_and_unlock(members, array_uuid, key, read_only)
        temporary = state_directory is None
        try:
            directory = (
                Path(tempfile.mkdtemp(prefix="raidd-index-"))
                if state_directory is None
                else prepare_state_directory(state_directory)
            )
            return cls(array, master, directory, None, temporary=temporary)
        except BaseException:
            array.close()
            raise

    @staticmethod
    def _assemble_and_unlock(
        members: Sequence[str], array_uuid: uuid.UUID | None, key: UnlockKey, read_only: bool
    ) -> tuple[Array, crypto.MasterKey]:
        paths = _expand_members(members)
        # A read-only assembly first, so that no roll-forward or claim writes
        # anything before a keyslot has opened.
        probe = assemble(paths, array_uuid=array_uuid, read_only=True)
        try:
            master = _unlock(probe, key)
        finally:
            probe.close()
        if read_only:
            array = assemble(paths, array_uuid=array_uuid, read_only=True)
        else:
            try:
                array = assemble(paths, array_uuid=array_uuid, read_only=False)
            except BaseException:
                master.wipe()
                raise
        return array, master

    def close(self) -> None:
        """Close the indexes and the array; remove a temporary index directory."""
        self.catalog.close()
        self.objects.close()
        self.array.close()
        self.keys.wipe()
        if self._temporary:
            shutil.rmtree(self.state_directory, ignore_errors=True)

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- local indexes -----------------------------------------------------------------

    def _open_indexes(self) -> tuple[CatalogIndex, ObjectIndex]:
        try:
            catalog = CatalogIndex(self.catalog_path)
            objects = ObjectIndex(self.objects_path)
        except IntegrityError as error:
            log.warning("index_unusable", error=str(error))
            self._remove_indexes()
            catalog = CatalogIndex(self.catalog_path)
            objects = ObjectIndex(self.objects_path)
        expected_sequence = self.root.sequence if self.root is not None else 0
        current = (
            objects.root() == (self.array.metadata_root if self.root else None)
            and catalog.next_commit(()).parent == expected_sequence
        )
        if current or (self.root is None and catalog.last_commit() is None):
            return catalog, objects
        fresh = catalog.last_commit() is None and objects.root() is None
        (log.info if fresh else log.warning)(
            "index_rebuild", array=str(self.array.uuid), state_directory=str(self.state_directory)
        )
        catalog.close()
        objects.close()
        self._remove_indexes()
        catalog = CatalogIndex(self.catalog_path)
        objects = ObjectIndex(self.objects_path)
        self._rebuild(catalog, objects)
        return catalog, objects

    def _remove_indexes(self) -> None:
        for path in (self.catalog_path, self.objects_path):
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(str(path) + suffix).unlink(missing_ok=True)

    def _rebuild(self, catalog: CatalogIndex, objects: ObjectIndex) -> None:
        """Fill empty indexes from the deltas and segments of the history, in order."""
        entries: dict[bytes, IndexEntry] = {}
        for ref in self.history():
            if ref.kind == KIND_DELTA:
                catalog.apply(decode_delta(bytes(self.read_metadata(ref))))
            elif ref.kind == KIND_SEGMENT:
                _, base, segment = decode_segment(bytes(self.read_metadata(ref)))
                if base:
                    entries.clear()
                entries.update((entry.object_id, entry) for entry in segment)
        objects.record(entries.values(), self.array.metadata_root, replace_all=True)

    # -- manifest ----------------------------------------------------------------------

    def read_page(self, ref: MetadataRef) -> tuple[MetadataRef, ...]:
        """Read a manifest page and return its references.

        Raises:
            IntegrityError: the page is lost, malformed, or of another height.
        """
        _, height, refs = decode_page(bytes(self.read_metadata(ref)))
        if height != ref.height:
            raise IntegrityError(
                f"manifest page {ref.object_id.hex()[:16]} has height {height}; its reference "
                f"says {ref.height}"
            )
        return refs

    def manifest_refs(self) -> Iterator[MetadataRef]:
        """Yield every reference under the top manifest in commit order, pages included."""
        return expand(self.manifest.refs, self.read_page)

    def history(self) -> Iterator[MetadataRef]:
        """Yield every listed metadata object (no pages) in commit order."""
        return (ref for ref in self.manifest_refs() if ref.kind != KIND_PAGE)

    def audit_refs(self) -> tuple[MetadataRef, ...]:
        """Return the audit objects of the history, oldest first."""
        return tuple(ref for ref in self.history() if ref.kind == KIND_AUDIT)

    # -- objects -----------------------------------------------------------------------

    def _sealing_key(self, kind: int) -> crypto.SecretKey:
        if kind == KIND_CHUNK:
            return self.keys.chunk
        return self.keys.audit if kind == KIND_AUDIT else self.keys.metadata

    def seal_object(self, kind: int, object_id: bytes, plaintext: bytes) -> bytes:
        """Return an object's stored bytes: header, then the sealed block."""
        key = self._sealing_key(kind)
        sealed = crypto.seal(key, plaintext, associated_data(self.array.uuid, kind, object_id))
        return object_header(kind, len(sealed), object_id) + sealed

    def open_stored(self, kind: int, object_id: bytes, stored: bytes) -> bytearray:
        """Authenticate and open one stored object.

        Raises:
            IntegrityError: a bad header or a failed authentication.
        """
        key = self._sealing_key(kind)
        try:
            return open_object(key, self.array.uuid, kind, object_id, stored)
        except crypto.CryptoError as error:
            raise IntegrityError(
                f"object {object_id.hex()[:16]} of array {self.array.uuid} fails "
                f"authentication: {error}"
            ) from error

    def read_object(self, kind: int, object_id: bytes, pieces: Location) -> bytearray:
        """Read, authenticate and open an object; reconstruct it when that fails.

        The engine checks every strip against its checksum and rebuilds a
        bad one from parity before it returns. An object that fails
        authentication anyway was read from strips whose checksums matched,
        so the other readings within the fault tolerance are tried
        (raidd.store.recovery.recover_object) before it is reported lost.

        Raises:
            IntegrityError: the object is lost; the message names it.
        """
        try:
            return self.open_stored(kind, object_id, read_location(self.array, pieces))
        except IntegrityError as failure:
            log.warning("object_read_failed", object_id=object_id.hex()[:16], error=str(failure))
        from raidd.store.recovery import recover_object

        return recover_object(self, kind, object_id, pieces)

    def read_metadata(self, ref: MetadataRef) -> bytearray:
        """Read a metadata object from the first copy that authenticates."""
        errors = []
        for copy in ref.copies:
            try:
                return self.read_object(ref.kind, ref.object_id, copy)
            except IntegrityError as error:
                errors.append(str(error))
        raise IntegrityError(
            f"metadata object {ref.object_id.hex()[:16]} is lost in every copy: "
            + "; ".join(errors)
        )

    def _read_manifest(self, ref: MetadataRef) -> Manifest:
        return decode_manifest(bytes(self.read_metadata(ref)))

    def write_metadata(
        self, packers: Sequence[Packer], kind: int, plaintext: bytes, start_fresh: bool = False
    ) -> tuple[bytes, int, list[PendingLocation]]:
        """Seal a metadata object and add one copy to each packer."""
        object_id = secrets.token_bytes(32)
        stored = self.seal_object(kind, object_id, plaintext)
        locations = [packer.add(stored, start_fresh=start_fresh) for packer in packers]
        return object_id, len(stored), locations

    def metadata_packers(self, first: Packer) -> list[Packer]:
        """Return one packer per metadata copy; the second copy never shares a stripe.

        Every packer has the first one's share of the reserve.
        """
        packers = [first]
        if self.copies == 2:
            packers.append(Packer(self.array, reserve=first.reserve))
        return packers

    # -- commits -----------------------------------------------------------------------

    def commit(
        self,
        delta: CommitDelta | None,
        packer: Packer,
        new_entries: Iterable[IndexEntry],
        *,
        base: bool = False,
        freed: Iterable[int] = (),
        refs: Sequence[MetadataRef] = (),
        history: Sequence[MetadataRef] | None = None,
        reuse_pages: Mapping[tuple[MetadataRef, ...], MetadataRef] | None = None,
    ) -> MetadataRoot:
        """Write a commit's delta, index segment and manifest, then commit the array.

        Args:
            delta: the catalog delta, from catalog.next_commit(); None for a
                commit that changes no catalog state (garbage collection).
            packer: the packer with this commit's chunk objects.
            new_entries: chunk locations added (with `base`, every live one);
                consumed after the packer was flushed.
            base: the segment replaces every earlier segment (after gc).
            freed: stripes released by this commit.
            refs: further metadata objects of this commit (a kind in
                objects.LISTED_KINDS), already written and flushed; listed
                after the delta and the segment.
            history: the objects to list before this commit's, in commit
                order, replacing the current history (gc, which drops the
                segments a base segment replaces and moves objects; audit
                objects are part of it); every page is then sealed anew,
                except those in `reuse_pages` (existing pages by what they
                list; gc keeps their stripes). None appends to the current top.

        Raises:
            ArrayFullError: the writes do not fit the free stripes that the
                packer's share of the reserve allows. Nothing is committed,
                and the stripes written for the commit are free again.
        """
        try:
            return self._commit(
                delta, packer, new_entries, base, freed, refs, history, reuse_pages
            )
        except BaseException:
            # Nothing references what a failed commit wrote (the caller's objects
            # included), so those stripes go back to the free list now.
            self.array.discard_uncommitted()
            raise

    def _commit(
        self,
        delta: CommitDelta | None,
        packer: Packer,
        new_entries: Iterable[IndexEntry],
        base: bool,
        freed: Iterable[int],
        refs: Sequence[MetadataRef],
        history: Sequence[MetadataRef] | None,
        reuse_pages: Mapping[tuple[MetadataRef, ...], MetadataRef] | None,
    ) -> MetadataRoot:
        packer.flush()
        entries = list(new_entries)
        packers = self.metadata_packers(packer)
        new_refs: list[MetadataRef] = []
        batch = self.audit.prepare(self)
        if batch is not None:
            new_refs.append(write_batch(self, batch, packer.reserve))
        if delta is not None:
            delta_id, delta_length, delta_at = self.write_metadata(
                packers, KIND_DELTA, encode_delta(delta)
            )
        sequence = delta.sequence if delta is not None else self.manifest.sequence
        # A commit of audit records alone needs no index segment.
        with_segment = delta is not None or base or bool(entries)
        if with_segment:
            segment = encode_segment(sequence, entries, base)
            segment_id, segment_length, segment_at = self.write_metadata(
                packers, KIND_SEGMENT, segment
            )
        for each in packers:
            each.flush()
        if delta is not None:
            new_refs.append(
                MetadataRef(
                    KIND_DELTA, delta_id, delta_length, tuple(p.resolve() for p in delta_at)
                )
            )
        if with_segment:
            new_refs.append(
                MetadataRef(
                    KIND_SEGMENT,
                    segment_id,
                    segment_length,
                    tuple(p.resolve() for p in segment_at),
                )
            )
        unlisted = [ref.kind for ref in refs if ref.kind not in LISTED_KINDS]
        if unlisted:
            raise ValueError(f"a manifest cannot list objects of kinds {unlisted}")
        new_refs.extend(refs)
        earlier = self.manifest.refs if history is None else history
        manifest, manifest_ref = write_top(
            self, packers, sequence, [*earlier, *new_refs], reuse_pages or {}
        )
        if delta is not None:
            time_ns = delta.time_ns
        else:
            time_ns = self.root.time_ns if self.root is not None else 0
        if batch is not None:
            audit_head = batch.head
        else:
            audit_head = self.root.audit_head if self.root is not None else bytes(32)
        root = MetadataRoot(sequence, time_ns, manifest_ref, audit_head)
        self.array.commit(encode_root(root), freed=freed, reserve=packer.reserve)
        self.root = root
        self.manifest = manifest
        if batch is not None:
            self.audit.committed(batch)
        if delta is not None:
            self.catalog.apply(delta)
        self.objects.record(entries, self.array.metadata_root, replace_all=base)
        log.info(
            "store_commit",
            array=str(self.array.uuid),
            sequence=sequence,
            chunks=len(entries),
            audit_records=batch.count if batch is not None else 0,
            event_counter=self.array.event,
        )
        return root

    def commit_audit(self) -> MetadataRoot | None:
        """Commit the pending audit records alone, on the reserve if need be; None if none.

        Such commits may use less than half of the reserve (Reserve.AUDIT,
        enforced by the engine). The rest stays for a forget commit and for
        gc, which frees space on a full array. Every audit commit keeps a
        stripe until gc compacts it.

        Raises:
            ArrayFullError: only the part of the reserve kept for forget and
                gc is left; the records stay pending, and the next commit
                (forget's or gc's) takes them.
        """
        if not self.audit.pending():
            return None
        try:
            return self.commit(None, Packer(self.array, reserve=Reserve.AUDIT), [])
        except ArrayFullError as error:
            raise ArrayFullError(
                f"{error}; the audit records wait for the next commit that has room"
            ) from error

    def chunk_reusable(self, object_id: bytes) -> bool:
        """Tell whether a backup may reference a stored chunk instead of storing it again.

        A chunk with a piece in bytes that a scrub or rebuild recorded as lost
        counts as absent: the backup stores it anew, and the index then points
        at the new copy. The lost stripes are not read.
        """
        entry = self.objects.get(object_id)
        if entry is None:
            return False
        return not any(
            self.array.range_lost(piece.stripe, piece.offset, piece.length)
            for piece in entry.pieces
        )

    # -- queries -----------------------------------------------------------------------

    def snapshots(self, since_ns: int | None = None, limit: int | None = None) -> list[CommitInfo]:
        """List commits newest first."""
        return self.catalog.commits(since_ns=since_ns, limit=limit)

    def resolve_commit(self, at_ns: int | None = None, sequence: int | None = None) -> CommitInfo:
        """Return the commit named by a time or a sequence; the newest by default.

        Raises:
            UsageError: no such commit, or none at or before the time.
        """
        if sequence is not None:
            found = self.catalog.commit(sequence)
            if found is None:
                raise UsageError(f"commit {sequence} not found; {self._commit_range()}")
            return found
        found = self.catalog.commit_at(at_ns) if at_ns is not None else self.catalog.last_commit()
        if found is None:
            if at_ns is None:
                raise UsageError("no commit yet")
            moment = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at_ns // 1_000_000_000))
            raise UsageError(f"no commit at or before {moment}; {self._commit_range()}")
        return found

    def _commit_range(self) -> str:
        """Describe the oldest and newest commits, for a message on a commit not found."""
        commits = self.catalog.commits()
        if not commits:
            return "there is no commit yet"
        newest, oldest = commits[0], commits[-1]
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(oldest.time_ns // 1_000_000_000))
        return (
            f"the oldest commit is {oldest.sequence} at {when} and the newest "
            f"{newest.sequence}; the `snapshots` command lists them"
        )

    def root_names(self) -> list[str]:
        """Return every root name the catalog has seen, sorted."""
        names: set[str] = set()
        for commit in self.catalog.commits():
            names.update(commit.roots)
        return sorted(names)

    def ls(self, root: str, sequence: int, prefix: bytes = b"") -> Iterator[Version]:
        """Yield the versions of `root` visible to commit `sequence` at or under `prefix`."""
        from raidd.store.snapshot import is_under

        for version in self.catalog.state(root, sequence):
            if is_under(version.path, prefix):
                yield version

    # -- operations (implemented in pipeline, restore and maintenance) ----------------

    def backup(self, roots: Sequence[str] | None = None, now_ns: int | None = None) -> Any:
        """Back up the named watched roots (all when empty) as one commit; see run_backup."""
        from raidd.store.pipeline import run_backup

        return run_backup(self, roots, now_ns)

    def restore_entries(self, selections: Sequence[Any], sequence: int) -> Iterator[Any]:
        """Yield (RestoreEntry, data source or None) for the selections at a commit."""
        from raidd.store.restore import stream_entries

        return stream_entries(self, selections, sequence)

    def restore(
        self,
        target: Path,
        paths: Sequence[bytes],
        sequence: int,
        *,
        overwrite: bool = False,
        dry_run: bool = False,
    ) -> Any:
        """Write the versions under `paths` (every root when empty) into `target`."""
        from raidd.store.restore import restore, select

        return restore(
            self, target, select(self, paths), sequence, overwrite=overwrite, dry_run=dry_run
        )

    def forget(self, *, dry_run: bool = False, now_ns: int | None = None) -> Any:
        """Apply the retention policies; see maintenance.forget."""
        from raidd.store.maintenance import forget

        return forget(self, dry_run=dry_run, now_ns=now_ns)

    def gc(self, *, dry_run: bool = False) -> Any:
        """Free unreferenced space; see maintenance.gc."""
        from raidd.store.maintenance import gc

        return gc(self, dry_run=dry_run)

    def audit_records(self, **filters: Any) -> list[dict[str, Any]]:
        """List audit records newest first; see audit.list_records."""
        from raidd.store.audit import list_records

        return list_records(self, **filters)

    def verify_audit(self) -> Any:
        """Verify the audit chain against the metadata root; see audit.verify_chain."""
        from raidd.store.audit import verify_chain

        return verify_chain(self)

    def check(self, *, read_data: bool = False) -> Any:
        """Check catalog, index and allocation; see maintenance.check."""
        from raidd.store.maintenance import check

        return check(self, read_data=read_data)

    def status(self) -> dict[str, Any]:
        """Return the store's counts for reports."""
        return {
            "array_uuid": str(self.array.uuid),
            "commits": len(self.catalog.commits()),
            "chunks": self.objects.count(),
            "free_stripes": self.array.free_stripe_count(),
            "stripes": self.array.stripe_count,
        }


def _expand_members(members: Sequence[str]) -> list[str]:
    """Expand glob patterns among the member paths; plain paths pass through."""
    import glob

    paths: list[str] = []
    for member in members:
        if any(character in member for character in "*?["):
            paths.extend(sorted(glob.glob(member)))
        else:
            paths.append(member)
    if not paths:
        raise ConfigError(f"array.members = {list(members)!r} matches no path: check the patterns")
    return paths
