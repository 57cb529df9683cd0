"""The backup store: turns watched directories into chunks and back into files.

Nouns:

- root: a watched directory, known in the catalog by its name.
- entry: one path under a root with its metadata (file, directory or symlink).
- chunk: a content-defined piece of a file, the unit of deduplication.
- codec tag: the byte in front of a stored chunk that says how it was compressed.
- version: a path's content and metadata as written by one commit.
- commit: the changes to the roots it lists, with a sequence number (its id)
  and a time that never goes backwards.
- catalog delta: one commit's versions and deletions in their byte form.

Modules, bottom up: chunker, compress, scan, reader (with sqlite_copy and
commands), retention, restore_writer, catalog_format and catalog.
"""

from raidd.store.catalog import CatalogIndex, CommitInfo
from raidd.store.catalog_format import (
    ChunkEntry,
    CommitDelta,
    Deletion,
    Version,
    decode_delta,
    encode_delta,
    json_name,
)
from raidd.store.chunker import Chunk, Chunker
from raidd.store.commands import CommandResult, run_backup_command
from raidd.store.compress import Compressor, EncodedChunk, decode_chunk
from raidd.store.reader import FileRead, FileReader, find_sqlite_sidecars
from raidd.store.restore_writer import RestoreEntry, RestoreReport, RestoreWriter
from raidd.store.retention import CommitPoint, RetentionDecision, apply_policy, versions_needed
from raidd.store.scan import Entry, EntryType, Excluder, ScanProblem, scan_root
from raidd.store.sqlite_copy import SqliteCopyError, copy_database

__all__ = [
    "CatalogIndex",
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
    "RestoreEntry",
    "RestoreReport",
    "RestoreWriter",
    "RetentionDecision",
    "ScanProblem",
    "SqliteCopyError",
    "Version",
    "apply_policy",
    "copy_database",
    "decode_chunk",
    "decode_delta",
    "encode_delta",
    "find_sqlite_sidecars",
    "json_name",
    "run_backup_command",
    "scan_root",
    "versions_needed",
]
