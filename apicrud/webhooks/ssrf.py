"""Outbound requests only to public addresses (server-side request forgery).

A webhook's URL is checked when it is created or changed, and again at each delivery:
the host is resolved then, every address it resolves to must be public (not private,
loopback, link-local, multicast, reserved or unspecified), and the request connects to
the very address that was checked, so a name that resolves elsewhere a moment later
(DNS rebinding) changes nothing. Setting ``webhook_allowed_hosts`` names hosts (names or
literal addresses) exempt from the address check, e.g. ``127.0.0.1`` in tests.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from apicrud.i18n import N_

__all__ = ["Target", "UnsafeTarget", "check_url", "resolve", "post"]


class UnsafeTarget(ValueError):
    """The URL is malformed, or names a host that is not public."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    address: str  # the checked address the request connects to


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
                or ip.is_reserved or ip.is_unspecified) and ip.is_global


def parse(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path?query) of an http(s) URL, or :class:`UnsafeTarget`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeTarget(N_("not a valid URL")) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeTarget(N_("must be an http or https URL with a host"))
    if parts.username or parts.password:
        raise UnsafeTarget(N_("must not carry credentials"))
    port = port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname.lower(), port, path


def resolve(url: str, allowed_hosts: frozenset[str] | set[str] | tuple = ()) -> Target:
    """Resolve the URL's host now and check every address; the first one is used."""
    scheme, host, port, path = parse(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnsafeTarget(N_("host %(host)s does not resolve", host=repr(host[:64]))) from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise UnsafeTarget(N_("host %(host)s does not resolve", host=repr(host[:64])))
    if host not in {h.lower() for h in allowed_hosts}:
        bad = [a for a in addresses if not _is_public(a)]
        if bad:
            raise UnsafeTarget(N_("host %(host)s resolves to a private, loopback or link-local "
                                  "address", host=repr(host[:64])))
    return Target(scheme, host, port, path, addresses[0])


check_url = resolve


def post(target: Target, body: bytes, headers: dict[str, str],
         timeout: float) -> int:
    """POST ``body`` to the checked address of ``target`` (TLS verified against its host
    name); return the HTTP status. Redirects are not followed."""
    conn: http.client.HTTPConnection
    if target.scheme == "https":
        context = ssl.create_default_context()
        conn = _PinnedHTTPS(target.host, target.address, target.port, timeout, context)
    else:
        conn = http.client.HTTPConnection(target.address, target.port, timeout=timeout)
    try:
        conn.request("POST", target.path, body=body, headers={
            "Host": target.host if target.port in (80, 443) else f"{target.host}:{target.port}",
            **headers})
        resp = conn.getresponse()
        resp.read(65536)
        return resp.status
    finally:
        conn.close()


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a fixed address, verifying the certificate of the host name."""

    def __init__(self, host: str, address: str, port: int, timeout: float,
                 context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._context = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)
