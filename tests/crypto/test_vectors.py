"""Known-answer tests for AES-256-GCM, HKDF-SHA256 and scrypt, each with its source."""

import pytest
from Crypto.Cipher import AES

from crypto import hkdf
from crypto.keyslot_format import ScryptParams, passphrase_kek

# AES-256-GCM, 96-bit IV, 128-bit tag.
# "cavp": NIST CAVP "GCM Test Vectors (SP 800-38D)", file gcmEncryptExtIV256.rsp,
#     section [Keylen = 256][IVlen = 96][PTlen][AADlen][Taglen = 128], Count = 0.
# "gcm-spec": D. McGrew and J. Viega, "The Galois/Counter Mode of Operation
#     (GCM)", revised 2005, Appendix B, Test Cases 13 to 16 (AES-256).
GCM_VECTORS = [
    pytest.param(
        "b52c505a37d78eda5dd34f20c22540ea1b58963cf8e5bf8ffa85f9f2492505b4",
        "516c33929df5a3284ff463d7",
        "",
        "",
        "",
        "bdc1ac884d332457a1d2664f168c76f0",
        id="cavp-PTlen0-AADlen0",
    ),
    pytest.param(
        "31bdadd96698c204aa9ce1448ea94ae1fb4a9a0b3c9d773b51bb1822666b8f22",
        "0d18e06c7c725ac9e362e1ce",
        "2db5168e932556f8089a0622981d017d",
        "",
        "fa4362189661d163fcd6a56d8bf0405a",
        "d636ac1bbedd5cc3ee727dc2ab4a9489",
        id="cavp-PTlen128-AADlen0",
    ),
    pytest.param(
        "92e11dcdaa866f5ce790fd24501f92509aacf4cb8b1339d50c9c1240935dd08b",
        "ac93a1a6145299bde902f21a",
        "2d71bcfa914e4ac045b2aa60955fad24",
        "1e0889016f67601c8ebea4943bc23ad6",
        "8995ae2e6df3dbf96fac7b7137bae67f",
        "eca5aa77d51d4a0a14d9c51e1da474ab",
        id="cavp-PTlen128-AADlen128",
    ),
    pytest.param(
        "00" * 32, "00" * 12, "", "", "", "530f8afbc74536b9a963b4f1c4cb738b", id="gcm-spec-13"
    ),
    pytest.param(
        "00" * 32,
        "00" * 12,
        "00" * 16,
        "",
        "cea7403d4d606b6e074ec5d3baf39d18",
        "d0d1c8a799996bf0265b98b5d48ab919",
        id="gcm-spec-14",
    ),
    pytest.param(
        "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
        "cafebabefacedbaddecaf888",
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
        "",
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
        "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
        "b094dac5d93471bdec1a502270e3cc6c",
        id="gcm-spec-15",
    ),
    pytest.param(
        "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
        "cafebabefacedbaddecaf888",
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        "feedfacedeadbeeffeedfacedeadbeefabaddad2",
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
        "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
        "76fc6ece0f4e1768cddf8853bb2d551b",
        id="gcm-spec-16",
    ),
]


@pytest.mark.parametrize(("key", "iv", "plaintext", "aad", "ciphertext", "tag"), GCM_VECTORS)
def test_aes_gcm_encrypt_vector(
    key: str, iv: str, plaintext: str, aad: str, ciphertext: str, tag: str
) -> None:
    cipher = AES.new(bytes.fromhex(key), AES.MODE_GCM, nonce=bytes.fromhex(iv), mac_len=16)
    cipher.update(bytes.fromhex(aad))
    got_ciphertext, got_tag = cipher.encrypt_and_digest(bytes.fromhex(plaintext))
    assert got_ciphertext.hex() == ciphertext
    assert got_tag.hex() == tag


@pytest.mark.parametrize(("key", "iv", "plaintext", "aad", "ciphertext", "tag"), GCM_VECTORS)
def test_aes_gcm_decrypt_vector(
    key: str, iv: str, plaintext: str, aad: str, ciphertext: str, tag: str
) -> None:
    """The vector decrypts, and a tag with one bit flipped is rejected."""

    def decrypt(tag_bytes: bytes) -> bytes:
        cipher = AES.new(bytes.fromhex(key), AES.MODE_GCM, nonce=bytes.fromhex(iv), mac_len=16)
        cipher.update(bytes.fromhex(aad))
        result: bytes = cipher.decrypt_and_verify(bytes.fromhex(ciphertext), tag_bytes)
        return result

    assert decrypt(bytes.fromhex(tag)).hex() == plaintext
    bad_tag = bytearray.fromhex(tag)
    bad_tag[0] ^= 0x01
    with pytest.raises(ValueError, match="MAC check failed"):
        decrypt(bytes(bad_tag))


# RFC 5869, "HMAC-based Extract-and-Expand Key Derivation Function (HKDF)",
# Appendix A, Test Cases 1, 2 and 3 (the SHA-256 cases).
HKDF_VECTORS = [
    pytest.param(
        "0b" * 22,
        "000102030405060708090a0b0c",
        "f0f1f2f3f4f5f6f7f8f9",
        42,
        "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        id="rfc5869-A.1",
    ),
    pytest.param(
        bytes(range(0x00, 0x50)).hex(),
        bytes(range(0x60, 0xB0)).hex(),
        bytes(range(0xB0, 0x100)).hex(),
        82,
        "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
        "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
        "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
        "cc30c58179ec3e87c14c01d5c1f3434f1d87",
        id="rfc5869-A.2",
    ),
    pytest.param(
        "0b" * 22,
        "",
        "",
        42,
        "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        id="rfc5869-A.3",
    ),
]


@pytest.mark.parametrize(("ikm", "salt", "info", "length", "prk", "okm"), HKDF_VECTORS)
def test_hkdf_vector(ikm: str, salt: str, info: str, length: int, prk: str, okm: str) -> None:
    assert hkdf.extract(bytes.fromhex(salt), bytes.fromhex(ikm)).hex() == prk
    assert hkdf.expand(bytes.fromhex(prk), bytes.fromhex(info), length).hex() == okm
    assert (
        hkdf.derive(bytes.fromhex(ikm), bytes.fromhex(salt), bytes.fromhex(info), length).hex()
        == okm
    )


@pytest.mark.parametrize("length", [0, 255 * 32 + 1])
def test_hkdf_rejects_output_length(length: int) -> None:
    with pytest.raises(ValueError, match="HKDF output length must be 1 to 8160 bytes"):
        hkdf.expand(bytes(32), b"", length)


def test_passphrase_kek_scrypt_vector() -> None:
    """The passphrase KEK is scrypt with the slot's N, r and p.

    RFC 7914, "The scrypt Password-Based Key Derivation Function", section
    12, second vector: scrypt("password", "NaCl", N = 1024, r = 8, p = 16,
    dkLen = 64). The KEK is 32 bytes, the vector's first half (scrypt's
    final PBKDF2 step makes a shorter output a prefix of a longer one).
    """
    expected = (
        "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
        "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"
    )
    kek = passphrase_kek("password", b"NaCl", ScryptParams(log_n=10, r=8, p=16))
    assert kek.hex() == expected[:64]
