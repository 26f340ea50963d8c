"""RateLimit: the request guard that applies :class:`WindowLimiter` to every call.

Runs after authentication (see :mod:`apicrud.pipeline`), so it knows who is calling:

- an authenticated principal (session or API key) is counted per user id, against the
  user's grant ``ratelimit`` when a Grants service is installed
  (``services.grants.get(uid, "ratelimit") -> int``, requests per interval), else the
  setting ``ratelimit_default``;
- an anonymous request is counted per client address against ``ratelimit_anonymous``.
  The address is the TCP peer, unless the peer is listed in ``trusted_proxies``: then
  ``X-Forwarded-For`` is read from the right, skipping trusted hops, and the first
  untrusted address is the client. A client cannot forge its way past this, because
  only hops appended by proxies we trust are believed.

A limit of 0 means unlimited. An operation marked ``x-ratelimit: false`` in the spec is
not counted (``/health``: a load balancer polls it, and it must answer while Redis is
down). Every counted response carries ``RateLimit-Limit``, ``RateLimit-Remaining`` and
``RateLimit-Reset``; a refused one is a 429 problem with ``Retry-After`` too.

When Redis cannot be reached the setting ``ratelimit_fail`` decides: ``open`` lets the
request through, ``closed`` answers 503. Either way the failure is logged (at most once
every few seconds, with the number of requests affected meanwhile).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from typing import Any, Iterable

import redis.exceptions

from apicrud.errors import ServiceUnavailable, StartupError, TooManyRequests
from apicrud.ratelimit.limiter import Decision, WindowLimiter

log = logging.getLogger("apicrud.ratelimit")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
FAILURE_LOG_EVERY = 10.0  # seconds between two log lines about an unreachable Redis


def parse_networks(values: Iterable[str]) -> list[IPNetwork]:
    """Turn addresses and CIDR networks into networks.

    :raises ValueError: naming the first value that is neither
    """
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or network") from None
    return out


def _address(text: str | None) -> IPAddress | None:
    if not text:
        return None
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(addr: IPAddress | None, networks: list[IPNetwork]) -> bool:
    return addr is not None and any(addr in net for net in networks)


def client_address(peer: str | None, forwarded_for: str | None,
                   trusted: list[IPNetwork]) -> str:
    """The client's address: the peer, or the nearest untrusted hop of X-Forwarded-For.

    Only a trusted peer's ``X-Forwarded-For`` is read, right to left; each trusted hop
    passes the question on to the hop before it. An unparsable hop ends the walk at the
    last address a trusted proxy vouched for.
    """
    addr = _address(peer)
    if not forwarded_for or not _trusted(addr, trusted):
        return str(addr) if addr is not None else (peer or "unknown")
    for hop in reversed(forwarded_for.split(",")):
        ip = _address(hop)
        if ip is None:
            break
        addr = ip
        if not _trusted(ip, trusted):
            break
    return str(addr)


class RateLimit:
    """The guard: counts the request, sets the headers, refuses past the limit.

    :param services: the application's Services (settings; ``grants`` when installed)
    :param limiter: the shared window counter
    """

    def __init__(self, services: Any, limiter: WindowLimiter) -> None:
        settings = services.settings
        self.services = services
        self.limiter = limiter
        self.default_limit = int(settings.ratelimit_default)
        self.anonymous_limit = int(settings.ratelimit_anonymous)
        self.fail_open = settings.ratelimit_fail == "open"
        self.trusted = parse_networks(settings.trusted_proxies)
        self._fail_lock = threading.Lock()
        self._fail_logged = 0.0
        self._fail_count = 0

    def limit_for(self, uid: str) -> int:
        """The user's requests per interval: their grant, else ``ratelimit_default``."""
        grants = getattr(self.services, "grants", None)
        if grants is None:
            return self.default_limit
        value = grants.get(uid, "ratelimit")
        return self.default_limit if value is None else int(value)

    def subject(self, ctx: Any) -> tuple[str, int]:
        """(counter name, limit) for the caller of ``ctx``."""
        principal = ctx.principal
        if principal.authenticated:
            return f"uid:{principal.uid}", self.limit_for(principal.uid)
        addr = client_address(ctx.remote_addr, ctx.headers.get("X-Forwarded-For"),
                              self.trusted)
        return f"addr:{addr}", self.anonymous_limit

    def check(self, ctx: Any) -> Decision | None:
        """Count the request; None when it is not limited (exempt, limit 0, Redis down)."""
        if ctx.operation.extensions.get("x-ratelimit") is False:
            return None
        try:
            subject, limit = self.subject(ctx)
            if limit <= 0:
                return None
            decision = self.limiter.hit(subject, limit)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            self._unavailable(exc)
            return None
        if not decision.allowed:
            log.info("rate limit exceeded", extra={
                "event": "ratelimit", "subject": subject, "limit": decision.limit,
                "request_id": ctx.request_id})
        return decision

    def __call__(self, ctx: Any) -> None:
        decision = self.check(ctx)
        if decision is None:
            return
        headers = decision.headers()
        ctx.response_headers.update(headers)
        if not decision.allowed:
            raise TooManyRequests(
                f"rate limit of {decision.limit} requests per {decision.interval} seconds "
                f"reached; try again in {decision.reset} seconds",
                headers=headers, limit="ratelimit")

    def _unavailable(self, exc: Exception) -> None:
        """Log (throttled) that Redis is unreachable; raise 503 when failing closed."""
        now = time.monotonic()
        with self._fail_lock:
            self._fail_count += 1
            due = now - self._fail_logged >= FAILURE_LOG_EVERY
            if due:
                count, self._fail_count, self._fail_logged = self._fail_count, 0, now
        if due:
            log.error("rate limiter cannot reach redis (%s): %s %d request(s)",
                      type(exc).__name__, "allowed" if self.fail_open else "refused", count,
                      extra={"event": "ratelimit_unavailable",
                             "ratelimit_fail": "open" if self.fail_open else "closed"})
        if not self.fail_open:
            raise ServiceUnavailable("rate limiting is unavailable (redis is down)")


def init_app(services: Any) -> None:
    """Install the guard (setting ``ratelimit_enable``); exposed as ``services.ratelimit``."""
    settings = services.settings
    services.ratelimit = None
    if not settings.ratelimit_enable:
        return
    try:
        limiter = WindowLimiter(services.redis.client, settings.ratelimit_interval)
        guard = RateLimit(services, limiter)
    except ValueError as exc:
        raise StartupError([f"trusted_proxies: {exc}"]) from None
    services.ratelimit = guard
    services.pipeline.guards.append(guard)
