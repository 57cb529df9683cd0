"""Write q_vectors.json: P and Q of sample stripes computed with galois.

galois is not a dependency of raidd (it pulls in numba), so this script runs
in a throwaway virtual environment outside the repository:

    python3 -m venv /tmp/galois-venv
    /tmp/galois-venv/bin/pip install galois==0.4.11
    /tmp/galois-venv/bin/python tests/parity/vectors/generate_q_vectors.py

The data strips come from random.Random with fixed seeds, so a rerun writes
the same file.
"""

import json
import random
from pathlib import Path

import galois
import numpy as np

FIELD = galois.GF(2**8, irreducible_poly=0x11D)
G = FIELD(2)


def stripe(name: str, data: list[bytes]) -> dict[str, object]:
    """Compute P and Q of one stripe with galois arithmetic."""
    arrays = [FIELD(np.frombuffer(strip, dtype=np.uint8)) for strip in data]
    p = FIELD(np.zeros(len(data[0]), dtype=np.uint8))
    q = FIELD(np.zeros(len(data[0]), dtype=np.uint8))
    for i, strip in enumerate(arrays):
        p = p + strip
        q = q + (G**i) * strip
    return {
        "name": name,
        "data": [strip.hex() for strip in data],
        "p": bytes(np.asarray(p, dtype=np.uint8)).hex(),
        "q": bytes(np.asarray(q, dtype=np.uint8)).hex(),
    }


def main() -> None:
    cases = []
    for k in (1, 2, 3, 4, 5, 8, 16, 64, 255):
        rng = random.Random(k)
        cases.append(stripe(f"random k={k}", [rng.randbytes(64) for _ in range(k)]))
    every_byte = bytes(range(256))
    cases.append(stripe("every byte value k=3", [every_byte, every_byte[::-1], every_byte]))
    cases.append(stripe("all 0xff k=6", [b"\xff" * 32] * 6))
    nonzero = FIELD(np.arange(1, 256, dtype=np.uint8))
    document = {
        "source": "galois " + galois.__version__ + ", GF(2^8) with irreducible_poly=0x11d, g = 2",
        "command": "/tmp/galois-venv/bin/python tests/parity/vectors/generate_q_vectors.py",
        # log_g of 1..255, one byte each (every logarithm is below 255).
        "log_g_of_1_to_255": bytes(np.asarray(nonzero.log(G), dtype=np.uint8)).hex(),
        "cases": cases,
    }
    path = Path(__file__).with_name("q_vectors.json")
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
