"""Symmetric authenticated encryption and small crypto helpers.

:class:`AESEncrypt` (str in, bytes out) and :class:`AESEncryptBin` (bytes in,
bytes out) use AES-256-GCM with a fresh random 96-bit nonce per message.

Key derivation: :func:`derive_key` is the one way a key is made from the
configured secret: HKDF-SHA256 (no salt) with a label per purpose as ``info``.
The 32-byte AES key of a *context* has the label::

    b"apicrud/aes-256-gcm/v1:" + context.encode("utf-8")

so every context (e.g. ``"apicrud"`` by default, ``"session"`` for sessions)
gets an independent key from the same secret, and ciphertext from one context
cannot be decrypted in another. The HMAC keys of API-key hashes, TOTP backup
codes and file URLs come from labels of their own.

Wire format of a message::

    version (1 byte, 0x01) || nonce (12 bytes) || ciphertext || GCM tag (16 bytes)

The version byte is also bound as associated data.  Any tampering, truncation,
wrong secret or wrong context raises :class:`DecryptError`; garbage is never
returned.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "AESEncrypt",
    "AESEncryptBin",
    "DecryptError",
    "constant_time_equals",
    "derive_key",
    "token_hash",
]

VERSION = 1
NONCE_SIZE = 12
TAG_SIZE = 16
KEY_INFO_PREFIX = b"apicrud/aes-256-gcm/v1:"
_VERSION_BYTE = bytes([VERSION])


class DecryptError(ValueError):
    """Ciphertext is malformed, tampered with, or encrypted under another key."""


def derive_key(secret: str | bytes, label: bytes) -> bytes:
    """The 32-byte key for the purpose ``label`` derived from ``secret`` (HKDF-SHA256)."""
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not secret:
        raise ValueError("encryption secret must not be empty")
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=label,
    )
    return hkdf.derive(secret)


class AESEncryptBin:
    """AES-256-GCM encryption of bytes; see the module docstring for the format."""

    def __init__(self, secret: str | bytes, context: str = "apicrud") -> None:
        """Derive the key for ``context`` from ``secret`` (must be non-empty)."""
        self.context = context
        self._aead = AESGCM(derive_key(secret, KEY_INFO_PREFIX + context.encode("utf-8")))

    def encrypt(self, raw: bytes) -> bytes:
        """Encrypt ``raw``; every call uses a new random nonce."""
        if not isinstance(raw, (bytes, bytearray, memoryview)):
            raise TypeError("AESEncryptBin.encrypt expects bytes")
        nonce = os.urandom(NONCE_SIZE)
        return _VERSION_BYTE + nonce + self._aead.encrypt(nonce, bytes(raw), _VERSION_BYTE)

    def decrypt(self, enc: bytes) -> bytes:
        """Decrypt and authenticate ``enc``; raise :class:`DecryptError` on any failure."""
        if not isinstance(enc, (bytes, bytearray, memoryview)):
            raise DecryptError("ciphertext is not bytes")
        enc = bytes(enc)
        if len(enc) < 1 + NONCE_SIZE + TAG_SIZE:
            raise DecryptError("ciphertext too short")
        if enc[:1] != _VERSION_BYTE:
            raise DecryptError("unsupported ciphertext version")
        nonce = enc[1 : 1 + NONCE_SIZE]
        try:
            return self._aead.decrypt(nonce, enc[1 + NONCE_SIZE :], _VERSION_BYTE)
        except InvalidTag as exc:
            raise DecryptError("ciphertext failed authentication") from exc


class AESEncrypt:
    """AES-256-GCM encryption of text: ``encrypt(str) -> bytes``, ``decrypt(bytes) -> str``."""

    def __init__(self, secret: str | bytes, context: str = "apicrud") -> None:
        """Derive the key for ``context`` from ``secret`` (must be non-empty)."""
        self._bin = AESEncryptBin(secret, context=context)
        self.context = context

    def encrypt(self, raw: str) -> bytes:
        """Encrypt the UTF-8 encoding of ``raw``."""
        if not isinstance(raw, str):
            raise TypeError("AESEncrypt.encrypt expects str")
        return self._bin.encrypt(raw.encode("utf-8"))

    def decrypt(self, enc: bytes) -> str:
        """Decrypt ``enc`` to text; raise :class:`DecryptError` on any failure."""
        data = self._bin.decrypt(enc)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:  # pragma: no cover - authenticated, so unexpected
            raise DecryptError("plaintext is not valid UTF-8") from exc


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    """Compare two strings/bytes in constant time (str is compared as UTF-8)."""
    return hmac.compare_digest(_as_bytes(a), _as_bytes(b))


def token_hash(token: str) -> str:
    """Hex SHA-256 of ``token``: a safe lookup key for high-entropy tokens."""
    return hashlib.sha256(_as_bytes(token)).hexdigest()
