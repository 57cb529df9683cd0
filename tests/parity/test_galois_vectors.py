"""P and Q against vectors computed with galois, a GF(2^8) library this project did not write.

tests/parity/vectors/q_vectors.json was produced with galois 0.4.11
(GF(2^8) with irreducible_poly=0x11d, g = 2) by:

    python3 -m venv /tmp/galois-venv
    /tmp/galois-venv/bin/pip install galois==0.4.11
    /tmp/galois-venv/bin/python tests/parity/vectors/generate_q_vectors.py

galois is not a dependency of raidd: the vectors are checked in instead.
"""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from parity import encode_p, encode_pq, gf256, reference

VECTORS = json.loads(
    (Path(__file__).parent / "vectors" / "q_vectors.json").read_text(encoding="utf-8")
)
CASES: list[dict[str, Any]] = VECTORS["cases"]


def test_vectors_name_their_source() -> None:
    assert VECTORS["source"].startswith("galois 0.4.11, GF(2^8) with irreducible_poly=0x11d")
    assert len(CASES) == 11


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_encode_pq_matches_galois(case: dict[str, Any]) -> None:
    data = [bytes.fromhex(strip) for strip in case["data"]]
    p, q = encode_pq(data)
    assert p.tobytes().hex() == case["p"]
    assert q.tobytes().hex() == case["q"]
    assert encode_p(data).tobytes().hex() == case["p"]


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_reference_matches_galois(case: dict[str, Any]) -> None:
    data = [bytes.fromhex(strip) for strip in case["data"]]
    assert reference.encode_p(data).hex() == case["p"]
    assert reference.encode_q(data).hex() == case["q"]


def test_log_table_matches_galois() -> None:
    expected = bytes.fromhex(VECTORS["log_g_of_1_to_255"])
    assert bytes(gf256.LOG[1:]) == expected
    assert gf256.LOG_ARRAY[1:].astype(np.uint8).tobytes() == expected
