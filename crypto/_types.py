"""Type aliases shared by the crypto modules."""

# NOTE: collections.abc.Buffer arrives in Python 3.12; until the project
# requires 3.12 this union names the bytes-like types callers pass.
BytesLike = bytes | bytearray | memoryview
