"""Unit tests for apicrud.crypto."""

from __future__ import annotations

import hashlib

import pytest

from apicrud.crypto import (
    NONCE_SIZE,
    TAG_SIZE,
    AESEncrypt,
    AESEncryptBin,
    DecryptError,
    constant_time_equals,
    token_hash,
)

SECRET = "correct horse battery staple"


@pytest.mark.parametrize("text", ["hello", "", "ünïcødé ✓ 日本語 🔐", "x" * 10_000])
def test_str_round_trip(text: str) -> None:
    aes = AESEncrypt(SECRET)
    enc = aes.encrypt(text)
    assert isinstance(enc, bytes)
    assert aes.decrypt(enc) == text
    # A fresh instance with the same secret/context decrypts too.
    assert AESEncrypt(SECRET).decrypt(enc) == text


@pytest.mark.parametrize("data", [b"", b"\x00\x01\xff" * 7, bytes(range(256))])
def test_bytes_round_trip(data: bytes) -> None:
    aes = AESEncryptBin(SECRET)
    enc = aes.encrypt(data)
    assert aes.decrypt(enc) == data


def test_format_version_nonce_tag() -> None:
    enc = AESEncryptBin(SECRET).encrypt(b"abc")
    assert enc[0] == 1
    assert len(enc) == 1 + NONCE_SIZE + 3 + TAG_SIZE


def test_plaintext_not_in_ciphertext() -> None:
    enc = AESEncrypt(SECRET).encrypt("super-secret-plaintext")
    assert b"super-secret-plaintext" not in enc


def test_nonce_randomness() -> None:
    aes = AESEncrypt(SECRET)
    outputs = {aes.encrypt("same plaintext") for _ in range(50)}
    assert len(outputs) == 50
    nonces = {o[1 : 1 + NONCE_SIZE] for o in outputs}
    assert len(nonces) == 50


def test_tamper_detection_every_position() -> None:
    aes = AESEncrypt(SECRET)
    enc = aes.encrypt("attack at dawn")
    for i in range(len(enc)):
        bad = bytearray(enc)
        bad[i] ^= 0x01
        with pytest.raises(DecryptError):
            aes.decrypt(bytes(bad))


@pytest.mark.parametrize("bad", [b"", b"\x01", b"\x01" + b"\x00" * 27, b"garbage" * 10])
def test_malformed_input(bad: bytes) -> None:
    with pytest.raises(DecryptError):
        AESEncrypt(SECRET).decrypt(bad)


def test_truncated_and_extended() -> None:
    aes = AESEncryptBin(SECRET)
    enc = aes.encrypt(b"payload")
    with pytest.raises(DecryptError):
        aes.decrypt(enc[:-1])
    with pytest.raises(DecryptError):
        aes.decrypt(enc + b"\x00")


def test_non_bytes_input_is_decrypt_error() -> None:
    with pytest.raises(DecryptError):
        AESEncryptBin(SECRET).decrypt("not bytes")  # type: ignore[arg-type]
    with pytest.raises(DecryptError):
        AESEncryptBin(SECRET).decrypt(None)  # type: ignore[arg-type]


def test_decrypt_error_is_value_error() -> None:
    assert issubclass(DecryptError, ValueError)


def test_wrong_key() -> None:
    enc = AESEncrypt(SECRET).encrypt("data")
    with pytest.raises(DecryptError):
        AESEncrypt(SECRET + "x").decrypt(enc)


def test_context_separation() -> None:
    enc = AESEncrypt(SECRET, context="session").encrypt("data")
    assert AESEncrypt(SECRET, context="session").decrypt(enc) == "data"
    with pytest.raises(DecryptError):
        AESEncrypt(SECRET).decrypt(enc)
    with pytest.raises(DecryptError):
        AESEncrypt(SECRET, context="other").decrypt(enc)
    # Same for the binary variant, and str/bin share the key per context.
    enc_bin = AESEncryptBin(SECRET, context="files").encrypt(b"\xffdata")
    with pytest.raises(DecryptError):
        AESEncryptBin(SECRET, context="session").decrypt(enc_bin)
    assert AESEncryptBin(SECRET, context="session").decrypt(enc) == b"data"


def test_empty_secret_rejected() -> None:
    with pytest.raises(ValueError):
        AESEncrypt("")
    with pytest.raises(ValueError):
        AESEncryptBin("")


def test_type_checks() -> None:
    with pytest.raises(TypeError):
        AESEncrypt(SECRET).encrypt(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        AESEncryptBin(SECRET).encrypt("str")  # type: ignore[arg-type]


def test_constant_time_equals() -> None:
    assert constant_time_equals("abc", "abc")
    assert constant_time_equals(b"abc", b"abc")
    assert constant_time_equals("ü", "ü".encode())
    assert not constant_time_equals("abc", "abd")
    assert not constant_time_equals("abc", "abcd")
    assert not constant_time_equals(b"", b"x")


def test_token_hash() -> None:
    h = token_hash("tok")
    assert h == hashlib.sha256(b"tok").hexdigest()
    assert len(h) == 64 and "tok" not in h
    assert token_hash("tok") == h
    assert token_hash("tok2") != h
