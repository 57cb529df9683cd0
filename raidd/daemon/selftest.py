"""The start-up self-test: parity and sealing on known vectors, before any member is touched."""

from __future__ import annotations

import numpy as np
import structlog

import crypto
import parity
from raidd.errors import IntegrityError

log = structlog.get_logger(__name__)

# Three data strips of one repeated byte each. P is their XOR (0x01 ^ 0x02 ^
# 0x80 = 0x83). Q is the sum of g^i * D_i over GF(2^8) with polynomial 0x11d
# and g = 2: 1*0x01 ^ 2*0x02 ^ 4*0x80, where 4*0x80 = 0x3a after two
# reductions by 0x11d, so Q = 0x01 ^ 0x04 ^ 0x3a = 0x3f. Worked out by hand
# from that definition, the one Linux md uses.
DATA_BYTES = (0x01, 0x02, 0x80)
P_BYTE = 0x83
Q_BYTE = 0x3F
STRIP = 64


def parity_self_test() -> None:
    """Check RAID5 and RAID6 encoding and two-strip reconstruction on the known vector.

    Raises:
        IntegrityError: a result differs from the vector; the build or the
            machine computes parity wrongly and must not write stripes.
    """
    data = [np.full(STRIP, value, dtype=np.uint8) for value in DATA_BYTES]
    p = parity.encode_p(data)
    p6, q6 = parity.encode_pq(data)
    _expect("RAID5 P", p, P_BYTE)
    _expect("RAID6 P", p6, P_BYTE)
    _expect("RAID6 Q", q6, Q_BYTE)
    rebuilt5 = parity.reconstruct(5, [data[0], None, data[2], p])
    _expect("RAID5 rebuilt data strip 1", rebuilt5[1], DATA_BYTES[1])
    rebuilt6 = parity.reconstruct(6, [None, data[1], None, p6, q6])
    _expect("RAID6 rebuilt data strip 0", rebuilt6[0], DATA_BYTES[0])
    _expect("RAID6 rebuilt data strip 2", rebuilt6[2], DATA_BYTES[2])


def _expect(what: str, strip: np.ndarray, value: int) -> None:
    if not np.array_equal(strip, np.full(STRIP, value, dtype=np.uint8)):
        raise IntegrityError(
            f"parity self-test failed: {what} is not 0x{value:02x}; this build computes "
            "parity wrongly, so raidd stops before writing to any member"
        )


def run_self_tests() -> None:
    """Run the parity and the sealing self-tests.

    Raises:
        IntegrityError: either self-test failed.
    """
    parity_self_test()
    try:
        crypto.self_test()
    except crypto.CryptoError as error:
        raise IntegrityError(
            f"sealing self-test failed: {error}; raidd stops before touching any member"
        ) from error
    log.info("self_test_passed", checks="parity raid5 raid6, aes-256-gcm, hkdf, scrypt")
