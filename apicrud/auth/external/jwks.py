"""Verification keys of a token issuer: a static JWK Set from the settings, or a JWKS
URL fetched over HTTP(S) and cached in the process.

The cache is refreshed when it is older than ``ttl`` seconds and, so that an issuer can
rotate its keys without a restart here, when a token names a key id the cached set
lacks. Such unknown-kid refetches happen at most once per ``refetch_interval`` seconds
per issuer: a stream of tokens with made-up key ids cannot turn this service into a
client hammering the issuer. A failed fetch keeps the keys already cached; with none
cached, the caller gets :class:`KeysUnavailable` (a 503: the fault is not the caller's).

Only public asymmetric keys are accepted (RSA, EC, OKP): a symmetric or private key in
a JWK Set is refused, and so are keys marked for encryption (``use: enc``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey

from apicrud.errors import required

__all__ = ["KeySource", "KeysUnavailable", "UnknownKey", "fetch_json", "parse_jwks"]

log = logging.getLogger("apicrud.auth")

#: most bytes read from a JWKS or discovery document
MAX_DOCUMENT = 512 * 1024
PUBLIC_KEY_TYPES = {"RSA": RSAKey, "EC": ECKey, "OKP": OKPKey}
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")


class KeysUnavailable(Exception):
    """The issuer's keys could not be obtained and none are cached."""


class UnknownKey(Exception):
    """No key of the issuer matches the token's ``kid`` (after any allowed refetch)."""


def fetch_json(url: str, timeout: float) -> Any:
    """GET ``url`` (http or https only) and parse its JSON body.

    :raises KeysUnavailable: unreachable, not 200, too large or not JSON
    """
    if not url.startswith(("https://", "http://")):
        raise KeysUnavailable(f"{url}: only http(s) URLs can be fetched")
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        # the scheme is checked above: no file: or ftp: URL reaches urlopen
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # nosec B310 # http(s) only
            body = resp.read(MAX_DOCUMENT + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise KeysUnavailable(f"{url}: {exc}") from None
    if len(body) > MAX_DOCUMENT:
        raise KeysUnavailable(f"{url}: document larger than {MAX_DOCUMENT} bytes")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise KeysUnavailable(f"{url}: not a JSON document") from None


def parse_jwks(document: Any, where: str) -> KeySet:
    """The public signing keys of a JWK Set document.

    :raises ValueError: not a JWK Set, or a key that is private, symmetric or broken
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError(f"{where}: not a JWK Set (an object with a 'keys' list)")
    keys = []
    for i, item in enumerate(document["keys"]):
        if not isinstance(item, dict):
            raise ValueError(f"{where}: key {i} is not an object")
        kind: Any = PUBLIC_KEY_TYPES.get(str(item.get("kty")))
        if kind is None:
            raise ValueError(f"{where}: key {i}: only RSA, EC and OKP public keys are "
                             f"accepted, not kty {item.get('kty')!r}")
        if any(m in item for m in _PRIVATE_MEMBERS):
            raise ValueError(f"{where}: key {i} holds private key material")
        if item.get("use") == "enc":
            continue  # an encryption key never verifies a signature
        try:
            keys.append(kind.import_key(item))
        except (JoseError, ValueError, TypeError) as exc:
            raise ValueError(f"{where}: key {i}: {exc}") from None
    return KeySet(keys)


class KeySource:
    """The signing keys of one issuer, static or fetched (see the module docstring)."""

    def __init__(self, name: str, *, jwks_url: str | None = None,
                 keys: Iterable[dict] | None = None, ttl: float = 3600,
                 refetch_interval: float = 30, timeout: float = 5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """
        :param name: the issuer, for messages
        :param jwks_url: where the JWK Set is fetched from (when ``keys`` is not given)
        :param keys: static JWKs (public keys), used instead of a URL
        :raises ValueError: neither or both of jwks_url and keys, or a bad static key
        """
        if (jwks_url is None) == (keys is None):
            raise ValueError(f"{name}: give either jwks_url or keys")
        self.name = name
        self.jwks_url = jwks_url
        self.ttl = float(ttl)
        self.refetch_interval = float(refetch_interval)
        self.timeout = float(timeout)
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._fetched = float("-inf")  # when the last fetch (successful or not) began
        self._loaded = float("-inf")  # when the cached keys were fetched
        self.fetches = 0
        if keys is not None:
            self._keys = parse_jwks({"keys": [dict(k) for k in keys]}, name)

    def _refresh(self) -> None:
        """Fetch the set now (the lock is held); keep the old one on failure."""
        now = self._clock()
        self._fetched = now
        self.fetches += 1
        try:
            url = required(self.jwks_url, "jwks_url")  # refreshed only with one
            self._keys = parse_jwks(fetch_json(url, self.timeout), url)
            self._loaded = now
        except (KeysUnavailable, ValueError) as exc:
            log.warning("cannot fetch the keys of issuer %s: %s", self.name, exc)
            if self._keys is None:
                raise KeysUnavailable(str(exc)) from None

    def key_for(self, kid: str | None) -> Any:
        """The key a token with this ``kid`` (header) is checked with.

        A token without a kid is accepted only when the issuer has exactly one key.

        :raises UnknownKey: no such key, even after the refetch allowed now
        :raises KeysUnavailable: nothing cached and the fetch failed
        """
        with self._lock:
            if self.jwks_url is not None:
                now = self._clock()
                if (self._keys is None or now - self._loaded >= self.ttl) and \
                        (self._keys is None or now - self._fetched >= self.refetch_interval):
                    self._refresh()
            key = self._find(kid)
            if key is None and self.jwks_url is not None and \
                    self._clock() - self._fetched >= self.refetch_interval:
                self._refresh()  # a new kid: the issuer may have rotated its keys
                key = self._find(kid)
        if key is None:
            raise UnknownKey(kid)
        return key

    def _find(self, kid: str | None) -> Any:
        keys = list(self._keys or [])
        if kid is None:
            return keys[0] if len(keys) == 1 else None
        for key in keys:
            if key.kid == kid:
                return key
        return None
