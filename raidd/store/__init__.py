"""The backup store: turns watched directories into chunks and back into files.

Nouns:

- root: a watched directory, known in the catalog by its name.
- entry: one path under a root with its metadata (file, directory or symlink).
- chunk: a content-defined piece of a file, the unit of deduplication.
- codec tag: the byte in front of a stored chunk that says how it was compressed.
- commit: a snapshot of the roots it changed, with an id and a time.
"""

__all__: list[str] = []
