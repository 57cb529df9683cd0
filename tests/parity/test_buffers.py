"""Buffer types, out= arguments and argument errors of the codecs."""

import numpy as np
import pytest

from parity import GeometryError, Level, encode_p, encode_pq, reconstruct, reference
from tests.parity.helpers import random_strips

DATA = random_strips(7, 3, 24)
P = reference.encode_p(DATA)
Q = reference.encode_q(DATA)


@pytest.mark.parametrize(
    "convert",
    [
        bytes,
        bytearray,
        memoryview,
        lambda strip: np.frombuffer(strip, dtype=np.uint8),
        lambda strip: np.repeat(np.frombuffer(strip, dtype=np.uint8), 2)[::2],
    ],
    ids=["bytes", "bytearray", "memoryview", "ndarray", "strided ndarray"],
)
def test_every_buffer_type(convert: object) -> None:
    assert callable(convert)
    data = [convert(strip) for strip in DATA]
    p, q = encode_pq(data)
    assert p.dtype == np.uint8
    assert p.tobytes() == P
    assert q.tobytes() == Q
    assert encode_p(data).tobytes() == P


def test_strided_view_takes_every_other_byte() -> None:
    doubled = np.frombuffer(bytes(range(48)), dtype=np.uint8)[::2]
    assert encode_p([doubled]).tobytes() == bytes(range(0, 48, 2))


def test_out_arguments_are_filled_and_returned() -> None:
    p_out = np.zeros(24, dtype=np.uint8)
    q_out = np.zeros(24, dtype=np.uint8)
    p, q = encode_pq(DATA, p_out=p_out, q_out=q_out)
    assert p is p_out
    assert q is q_out
    assert p_out.tobytes() == P
    assert q_out.tobytes() == Q
    out = np.zeros(24, dtype=np.uint8)
    assert encode_p(DATA, out=out) is out
    assert out.tobytes() == P


def test_out_of_wrong_size_rejected() -> None:
    with pytest.raises(GeometryError, match="out must have the strip size 24; got 16 bytes"):
        encode_p(DATA, out=np.zeros(16, dtype=np.uint8))
    with pytest.raises(GeometryError, match="q_out must have the strip size 24"):
        encode_pq(DATA, q_out=np.zeros(25, dtype=np.uint8))


def test_out_of_wrong_type_rejected() -> None:
    with pytest.raises(TypeError, match=r"p_out must be a 1-D numpy\.uint8 array"):
        encode_pq(DATA, p_out=np.zeros(24, dtype=np.int32))  # type: ignore[arg-type]


def test_read_only_out_rejected() -> None:
    read_only = np.zeros(24, dtype=np.uint8)
    read_only.flags.writeable = False
    with pytest.raises(GeometryError, match="out must be writable and contiguous"):
        encode_p(DATA, out=read_only)


def test_strips_of_different_sizes_rejected() -> None:
    with pytest.raises(GeometryError, match="same size; got sizes 24, 23, 24"):
        encode_pq([DATA[0], DATA[1][:-1], DATA[2]])
    with pytest.raises(GeometryError, match="same size"):
        reconstruct(Level.RAID5, [DATA[0], None, DATA[2][:8], P])


def test_wrong_strip_type_rejected() -> None:
    with pytest.raises(TypeError, match="data strip 1 must be bytes, bytearray, memoryview"):
        encode_p([DATA[0], "text", DATA[2]])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"data strip 0 must be a 1-D numpy\.uint8 array"):
        encode_p([np.zeros((2, 12), dtype=np.uint8)])


def test_data_strip_counts() -> None:
    with pytest.raises(GeometryError, match="encode_p needs at least 1 data strip; got 0"):
        encode_p([])
    with pytest.raises(GeometryError, match="RAID6 needs 1 to 255 data strips; got 0"):
        encode_pq([])
    with pytest.raises(GeometryError, match="RAID6 needs 1 to 255 data strips; got 256"):
        encode_pq([b"\x00" * 8] * 256)


def test_single_data_strip() -> None:
    """With one data strip, P and Q are both copies of it (g^0 = 1)."""
    p, q = encode_pq([DATA[0]])
    assert p.tobytes() == DATA[0]
    assert q.tobytes() == DATA[0]


def test_empty_strips() -> None:
    p, q = encode_pq([b"", b""])
    assert p.size == 0
    assert q.size == 0


def test_reconstruct_checks_strip_count_and_level() -> None:
    with pytest.raises(GeometryError, match="RAID6 needs at least 4 members; got 3"):
        reconstruct(Level.RAID6, [DATA[0], None, P])
    with pytest.raises(GeometryError, match="RAID level must be one of"):
        reconstruct(4, [DATA[0], None, P])


def test_reconstruct_accepts_level_as_int() -> None:
    rebuilt = reconstruct(6, [DATA[0], None, DATA[2], P, None])
    assert rebuilt[1].tobytes() == DATA[1]
    assert rebuilt[4].tobytes() == Q


def test_reconstruct_writes_into_out() -> None:
    x_out = np.zeros(24, dtype=np.uint8)
    q_out = np.zeros(24, dtype=np.uint8)
    ignored = np.zeros(24, dtype=np.uint8)
    rebuilt = reconstruct(
        Level.RAID6, [DATA[0], None, DATA[2], P, None], out=[ignored, x_out, None, None, q_out]
    )
    assert rebuilt[1] is x_out
    assert rebuilt[4] is q_out
    assert x_out.tobytes() == DATA[1]
    assert q_out.tobytes() == Q
    assert not ignored.any()


def test_reconstruct_out_for_mirrors_and_raid5() -> None:
    copy_out = np.zeros(24, dtype=np.uint8)
    assert reconstruct(Level.RAID1, [DATA[0], None], out=[None, copy_out])[1] is copy_out
    assert copy_out.tobytes() == DATA[0]
    p_out = np.zeros(24, dtype=np.uint8)
    assert reconstruct(Level.RAID5, [*DATA, None], out=[None] * 3 + [p_out])[3] is p_out
    assert p_out.tobytes() == P


def test_reconstruct_out_checked() -> None:
    with pytest.raises(GeometryError, match=r"out must have one entry per strip \(4\); got 2"):
        reconstruct(Level.RAID5, [*DATA, None], out=[None, None])
    with pytest.raises(GeometryError, match=r"out\[3\] must have the strip size 24; got 8 bytes"):
        reconstruct(Level.RAID5, [*DATA, None], out=[None, None, None, np.zeros(8, np.uint8)])


def test_reconstruct_from_strided_strips() -> None:
    """Every RAID6 case reads strided arrays, which have no uint64 view."""
    strided = [np.repeat(np.frombuffer(strip, dtype=np.uint8), 2)[::2] for strip in [*DATA, P, Q]]
    for missing in [(0, 1), (1, 3), (2, 4), (3, 4)]:
        damaged = [None if i in missing else strip for i, strip in enumerate(strided)]
        rebuilt = reconstruct(Level.RAID6, damaged)
        assert [strip.tobytes() for strip in rebuilt] == [*DATA, P, Q], missing
