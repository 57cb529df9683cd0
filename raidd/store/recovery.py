"""Reconstruction of an object whose bytes fail authentication.

The engine rebuilds a strip that fails its checksum before it returns, so
an object that still fails authentication was read from strips whose
checksums matched: a corruption that kept its CRC, or a wrong checksum
recorded with the strip. Then each piece of the object is offered the
engine's other readings of its range (raidd.array.recover), with the other
pieces as read, until one authenticates. The engine repairs the stripe from
that reading and counts the bad strip against its member. Only when no
reading authenticates is the object lost.
"""

import structlog

from raidd.errors import IntegrityError
from raidd.store.objects import KIND_NAMES, Location
from raidd.store.store import Store

__all__ = ["recover_object"]

log = structlog.get_logger(__name__)


def recover_object(store: Store, kind: int, object_id: bytes, pieces: Location) -> bytearray:
    """Reconstruct, authenticate and open an object that failed a plain read.

    Pieces that the engine cannot read at all are the suspects (at most one
    can be rebuilt this way); otherwise every piece is tried in turn.

    Raises:
        IntegrityError: no reading within the fault tolerance authenticates;
            the message names the object and its stripes.
    """
    name = f"{KIND_NAMES[kind]} {object_id.hex()[:16]}"
    stripes = sorted({piece.stripe for piece in pieces})
    parts: list[bytes | None] = []
    for piece in pieces:
        if piece.offset + piece.length > store.array.stripe_data_size:
            raise IntegrityError(f"{name}: piece {piece.offset}+{piece.length} exceeds its stripe")
        try:
            parts.append(store.array.read(piece.stripe, piece.offset, piece.length))
        except IntegrityError as error:
            log.warning(
                "object_piece_unreadable", object_id=object_id.hex()[:16], error=str(error)
            )
            parts.append(None)
    unreadable = [index for index, part in enumerate(parts) if part is None]
    if len(unreadable) > 1:
        raise IntegrityError(
            f"{name} is lost: {len(unreadable)} of its pieces (stripes {stripes}) cannot be read"
        )
    opened: list[bytearray] = []
    for index in unreadable or range(len(pieces)):

        def accept(data: bytes, index: int = index) -> bool:
            joined = b"".join(data if i == index else part or b"" for i, part in enumerate(parts))
            try:
                opened.append(store.open_stored(kind, object_id, joined))
            except IntegrityError:
                return False
            return True

        piece = pieces[index]
        if store.array.recover_range(piece.stripe, piece.offset, piece.length, accept) is not None:
            log.warning(
                "object_recovered",
                array=str(store.array.uuid),
                object_id=object_id.hex()[:16],
                stripe=piece.stripe,
            )
            return opened[-1]
    raise IntegrityError(
        f"{name} is lost: no reading of stripes {stripes} within the array's fault tolerance "
        "authenticates"
    )
