"""raidd: encrypted, versioned, redundant copies of data directories.

Nouns used across the package:

- member: one block device or image file of an array.
- strip: what one member stores of one stripe; its size is md's "chunk size".
- stripe: one strip on every present member, data strips plus parity.
- chunk: a content-defined piece of a file, the unit of deduplication.
- object: a sealed record in the data area (one chunk, or metadata).
- commit: one durable step of the array, numbered by the event counter.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
