"""SecretKey hygiene, subkey derivation and chunk ids."""

import copy
import gc
import hmac
import os
import pickle

import pytest

import crypto
from crypto import hkdf
from crypto.keys import SUBKEY_LABELS

FIXED_MASTER = bytes(range(0xA0, 0xC0))


def test_repr_hides_key_bytes() -> None:
    material = bytearray(FIXED_MASTER)
    key = crypto.MasterKey(material)
    texts = [
        repr(key),
        str(key),
        f"{key}",
        f"{key!r}",
        repr([key]),
        repr(crypto.derive_subkeys(key)),
    ]
    for text in texts:
        assert FIXED_MASTER.hex() not in text
        assert FIXED_MASTER.hex()[:8] not in text
        assert "redacted" in text


def test_wipe_zeroes_the_bytearray() -> None:
    material = bytearray(FIXED_MASTER)
    key = crypto.SecretKey(material)
    key.wipe()
    assert material == bytearray(32)
    assert key.wiped
    assert repr(key) == "<SecretKey wiped>"
    with pytest.raises(ValueError, match="was wiped"):
        key.view()


def test_dropped_key_is_wiped() -> None:
    material = bytearray(FIXED_MASTER)
    key = crypto.SecretKey(material)
    del key
    gc.collect()
    assert material == bytearray(32)


def test_view_of_dropped_key_shows_zeros() -> None:
    """A view does not keep the key alive: dropping the key wipes what the view shows."""
    view = crypto.SecretKey(bytearray(FIXED_MASTER)).view()
    gc.collect()
    assert bytes(view) == bytes(32)


def test_view_is_read_only() -> None:
    key = crypto.SecretKey(bytearray(FIXED_MASTER))
    view = key.view()
    assert bytes(view) == FIXED_MASTER
    with pytest.raises(TypeError):
        view[0] = 0


@pytest.mark.parametrize("action", [pickle.dumps, copy.copy, copy.deepcopy])
def test_key_cannot_be_pickled_or_copied(action: object) -> None:
    key = crypto.SecretKey.generate()
    with pytest.raises(TypeError, match="cannot be pickled or copied"):
        action(key)  # type: ignore[operator]


def test_key_requires_bytearray() -> None:
    with pytest.raises(TypeError, match="key material must be a bytearray, got bytes"):
        crypto.SecretKey(FIXED_MASTER)  # type: ignore[arg-type]


def test_generated_keys_differ() -> None:
    first, second = crypto.MasterKey.generate(), crypto.MasterKey.generate()
    assert first != second
    assert bytes(first.view()) != bytes(32)


def test_equality_is_by_value() -> None:
    assert crypto.SecretKey.from_buffer(FIXED_MASTER) == crypto.SecretKey.from_buffer(FIXED_MASTER)
    with pytest.raises(TypeError):
        hash(crypto.SecretKey.from_buffer(FIXED_MASTER))


def test_subkeys_follow_documented_labels() -> None:
    """Each subkey is HKDF-Expand(HKDF-Extract(empty salt, master), label, 32)."""
    subkeys = crypto.derive_subkeys(crypto.MasterKey.from_buffer(FIXED_MASTER))
    prk = hmac.digest(bytes(32), FIXED_MASTER, "sha256")
    assert SUBKEY_LABELS == {
        "chunk": b"raidd/v1/subkey/chunk",
        "chunk_id": b"raidd/v1/subkey/chunk-id",
        "chunker_seed": b"raidd/v1/subkey/chunker-seed",
        "metadata": b"raidd/v1/subkey/metadata",
        "audit": b"raidd/v1/subkey/audit",
        "audit_path": b"raidd/v1/subkey/audit-path",
        "audit_chain": b"raidd/v1/subkey/audit-chain",
    }
    for name, label in SUBKEY_LABELS.items():
        expected = hmac.digest(prk, label + b"\x01", "sha256")
        assert bytes(getattr(subkeys, name).view()) == expected, name
    assert bytes(subkeys.chunk.view()) == hkdf.derive(
        FIXED_MASTER, b"", SUBKEY_LABELS["chunk"], 32
    )


def test_subkeys_are_distinct_and_deterministic() -> None:
    first = crypto.derive_subkeys(crypto.MasterKey.from_buffer(FIXED_MASTER))
    second = crypto.derive_subkeys(crypto.MasterKey.from_buffer(FIXED_MASTER))
    names = list(SUBKEY_LABELS)
    values = {bytes(getattr(first, name).view()) for name in names}
    assert len(values) == len(names)
    assert FIXED_MASTER not in values
    for name in names:
        assert getattr(first, name) == getattr(second, name)
    other = crypto.derive_subkeys(crypto.MasterKey.generate())
    for name in names:
        assert getattr(first, name) != getattr(other, name)


def test_subkeys_wipe() -> None:
    subkeys = crypto.derive_subkeys(crypto.MasterKey.generate())
    subkeys.wipe()
    assert all(getattr(subkeys, name).wiped for name in SUBKEY_LABELS)


def test_derive_subkeys_requires_master() -> None:
    with pytest.raises(TypeError, match="derive_subkeys needs a MasterKey, got SecretKey"):
        crypto.derive_subkeys(crypto.SecretKey.generate())  # type: ignore[arg-type]


def test_chunk_id_is_keyed() -> None:
    """Equal content gives equal ids under one array's key only."""
    first = crypto.derive_subkeys(crypto.MasterKey.from_buffer(FIXED_MASTER))
    other = crypto.derive_subkeys(crypto.MasterKey.generate())
    content = b"customer record 42" * 100
    identifier = crypto.chunk_id(first.chunk_id, content)
    assert len(identifier) == 32
    assert identifier == crypto.chunk_id(first.chunk_id, bytearray(content))
    assert identifier != crypto.chunk_id(other.chunk_id, content)
    assert identifier != crypto.chunk_id(first.chunk_id, content + b"\x00")
    expected = hmac.digest(bytes(first.chunk_id.view()), content, "sha256")
    assert identifier == expected


def test_chunk_id_rejects_master(master: crypto.MasterKey) -> None:
    with pytest.raises(TypeError, match="chunk_id needs the chunk_id subkey"):
        crypto.chunk_id(master, b"content")


def test_generate_after_fork_differs() -> None:
    """Children forked after a key was generated draw their own keys from the kernel."""
    parent_key = crypto.MasterKey.generate()
    keys = [bytes(parent_key.view())]
    for _ in range(3):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                child_key = crypto.MasterKey.generate()
                os.write(write_end, bytes(child_key.view()))
                status = 0
            finally:
                os._exit(status)
        os.close(write_end)
        keys.append(os.read(read_end, 64))
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    assert all(len(key) == 32 for key in keys)
    assert len(set(keys)) == 4
