"""Seal a message for the queue: encrypted and authenticated, as one ASCII string.

A queued message may carry a one-time token in its body, and it sits in the broker, in
its logs, and, if it cannot be delivered, in the dead-letter list. Sealed with
AESEncrypt (AES-GCM, key derived from ``secret_key`` for the context ``"mail"``), it
is readable only by processes that hold the service's secret, i.e. the worker.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from apicrud.crypto import AESEncrypt, DecryptError

__all__ = ["Sealer", "EnvelopeError"]

CONTEXT = "mail"


class EnvelopeError(ValueError):
    """The envelope is malformed or was sealed with another secret."""


class Sealer:
    """``seal(dict) -> str`` and ``open(str) -> dict`` with the service's secret."""

    def __init__(self, secret: str) -> None:
        self._cipher = AESEncrypt(secret, context=CONTEXT)

    def seal(self, message: dict[str, Any]) -> str:
        raw = json.dumps(message, separators=(",", ":"))
        return base64.urlsafe_b64encode(self._cipher.encrypt(raw)).decode("ascii")

    def open(self, envelope: str) -> dict[str, Any]:
        try:
            raw = self._cipher.decrypt(base64.urlsafe_b64decode(envelope.encode("ascii")))
            message = json.loads(raw)
        except (DecryptError, binascii.Error, ValueError, AttributeError, UnicodeError):
            raise EnvelopeError("cannot open the message (malformed or another secret)") \
                from None
        if not isinstance(message, dict):
            raise EnvelopeError("the message is not an object")
        return message
