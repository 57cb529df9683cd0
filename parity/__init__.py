"""parity: stripe geometry and numpy codecs for RAID 0, 1, 5, 6 and 10.

Nouns:

* member: one device of an array; members are numbered 0 .. n-1.
* strip: what one member stores of a stripe, ``strip_size`` bytes (Linux md
  calls this size the chunk size).
* stripe: one strip on every member: data strips, plus P (RAID5) or P and Q
  (RAID6), or copies (RAID1, RAID10).
* P: XOR of a stripe's data strips. Q: sum of g^i * D_i over GF(2^8) with
  polynomial 0x11d and g = 2, as Linux md, ISA-L and SnapRAID define it.
* erasure: a strip known to be missing; corruption: a strip present but wrong.

Codecs take strips as bytes, bytearray, memoryview or 1-D uint8 arrays, read
them through views, and return uint8 arrays.
"""

from parity.codec import Verification, reconstruct, verify
from parity.errors import GeometryError, ParityError, TooManyErasures
from parity.geometry import Geometry, Level, StripeLayout, StripLocation
from parity.raid5 import encode_p
from parity.raid6 import encode_pq
from parity.strips import Buffer

__all__ = [
    "Buffer",
    "Geometry",
    "GeometryError",
    "Level",
    "ParityError",
    "StripLocation",
    "StripeLayout",
    "TooManyErasures",
    "Verification",
    "encode_p",
    "encode_pq",
    "reconstruct",
    "verify",
]
