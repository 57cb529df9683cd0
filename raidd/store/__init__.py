"""The backup store: turns watched directories into chunks and back into files.

Nouns:

- root: a watched directory, known in the catalog by its name.
- entry: one path under a root with its metadata (file, directory or symlink).
- chunk: a content-defined piece of a file, the unit of deduplication.
- codec tag: the byte in front of a stored chunk that records how it was compressed.
- version: a path's content and metadata as written by one commit.
- commit: the changes to the roots it lists, with a sequence number (its id)
  and a time that never goes backwards.
- catalog delta: one commit's versions and deletions in their byte form.
- object: a chunk or a metadata record, sealed, packed into stripes.
- object index: chunk id -> pieces (stripe, offset, length) on the array.
- history: every live metadata object (catalog deltas, index segments,
  audit objects) in commit order.
- manifest: the top of the history, written by each commit; the metadata
  root in the superblock points at the newest one.
- manifest page: an immutable object holding a run of older history
  references (or of lower pages), so the top stays small.
- audit record: one audited request or automatic action; records are
  hash-chained, sealed in audit objects, and the chain head is part of the
  metadata root (raidd.store.audit).
- Store: all of the above on one array (raidd.store.store).
- changed paths: the paths a watcher reported; a backup can scan only
  those and what their change can have moved (raidd.store.changes).

Modules, bottom up: chunker, compress, scan, reader (with sqlite_copy and
commands), retention, restore_writer, catalog_format, catalog, snapshot,
objects, manifest, audit_format, packing, audit, object_index, store,
recovery, changes, pipeline, restore and maintenance.
"""

import importlib
from typing import Any

# Submodules load on first use, so that the SQLite copy child process, which
# runs `python -m raidd.store.sqlite_child`, starts without importing numpy,
# zstandard and pyfastcdc.
_EXPORTS = {
    "Store": "raidd.store.store",
    "AuditLog": "raidd.store.audit",
    "AuditRecord": "raidd.store.audit_format",
    "ChainReport": "raidd.store.audit",
    "UnlockKey": "raidd.store.store",
    "BackupResult": "raidd.store.pipeline",
    "BackupProblem": "raidd.store.pipeline",
    "run_backup": "raidd.store.pipeline",
    "RestoreResult": "raidd.store.restore",
    "Selection": "raidd.store.restore",
    "CheckResult": "raidd.store.maintenance",
    "ForgetResult": "raidd.store.maintenance",
    "GcResult": "raidd.store.maintenance",
    "ObjectIndex": "raidd.store.object_index",
    "Packer": "raidd.store.packing",
    "MetadataRoot": "raidd.store.objects",
    "Manifest": "raidd.store.objects",
    "CatalogIndex": "raidd.store.catalog",
    "Chunk": "raidd.store.chunker",
    "ChunkEntry": "raidd.store.catalog_format",
    "Chunker": "raidd.store.chunker",
    "CommandResult": "raidd.store.commands",
    "CommitDelta": "raidd.store.catalog_format",
    "CommitInfo": "raidd.store.catalog",
    "CommitPoint": "raidd.store.retention",
    "Compressor": "raidd.store.compress",
    "Deletion": "raidd.store.catalog_format",
    "EncodedChunk": "raidd.store.compress",
    "Entry": "raidd.store.scan",
    "EntryType": "raidd.store.scan",
    "Excluder": "raidd.store.scan",
    "FileRead": "raidd.store.reader",
    "FileReader": "raidd.store.reader",
    "Forget": "raidd.store.catalog_format",
    "HardLinkGroups": "raidd.store.snapshot",
    "RestoreEntry": "raidd.store.restore_writer",
    "RestoreReport": "raidd.store.restore_writer",
    "RestoreWriter": "raidd.store.restore_writer",
    "RetentionDecision": "raidd.store.retention",
    "ScanProblem": "raidd.store.scan",
    "SubsetScanner": "raidd.store.scan",
    "ChangeScan": "raidd.store.changes",
    "SqliteCopyError": "raidd.store.sqlite_copy",
    "Version": "raidd.store.catalog_format",
    "apply_policy": "raidd.store.retention",
    "copy_database": "raidd.store.sqlite_copy",
    "decode_chunk": "raidd.store.compress",
    "decode_delta": "raidd.store.catalog_format",
    "encode_delta": "raidd.store.catalog_format",
    "find_sqlite_sidecars": "raidd.store.reader",
    "is_unchanged": "raidd.store.snapshot",
    "is_under": "raidd.store.snapshot",
    "json_name": "raidd.store.catalog_format",
    "locate_path": "raidd.store.snapshot",
    "restore_entries": "raidd.store.snapshot",
    "run_backup_command": "raidd.store.commands",
    "scan_changes": "raidd.store.changes",
    "scan_root": "raidd.store.scan",
    "version_from": "raidd.store.snapshot",
    "versions_needed": "raidd.store.retention",
}


__all__ = [
    "AuditLog",
    "AuditRecord",
    "BackupProblem",
    "BackupResult",
    "CatalogIndex",
    "ChainReport",
    "ChangeScan",
    "CheckResult",
    "Chunk",
    "ChunkEntry",
    "Chunker",
    "CommandResult",
    "CommitDelta",
    "CommitInfo",
    "CommitPoint",
    "Compressor",
    "Deletion",
    "EncodedChunk",
    "Entry",
    "EntryType",
    "Excluder",
    "FileRead",
    "FileReader",
    "Forget",
    "ForgetResult",
    "GcResult",
    "HardLinkGroups",
    "Manifest",
    "MetadataRoot",
    "ObjectIndex",
    "Packer",
    "RestoreEntry",
    "RestoreReport",
    "RestoreResult",
    "RestoreWriter",
    "RetentionDecision",
    "ScanProblem",
    "Selection",
    "SqliteCopyError",
    "Store",
    "SubsetScanner",
    "UnlockKey",
    "Version",
    "apply_policy",
    "copy_database",
    "decode_chunk",
    "decode_delta",
    "encode_delta",
    "find_sqlite_sidecars",
    "is_unchanged",
    "is_under",
    "json_name",
    "locate_path",
    "restore_entries",
    "run_backup",
    "run_backup_command",
    "scan_changes",
    "scan_root",
    "version_from",
    "versions_needed",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'raidd.store' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
