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

Requests whose credentials fail (an unknown, expired or revoked token, cookie or API
key) are counted too, per client address, against ``ratelimit_auth_failures``: checking
a credential costs a Redis or database lookup, so a flood of guesses must not be free.
Once an address has used up its failures for the window, its API keys (whose check
reads the database) are refused (429, ``Retry-After``) before they are looked at, and
its other credentials (sessions, checked in Redis at the cost of the counter itself)
are still checked: valid ones pass, so a flood of guesses from a shared address does not
lock out the signed-in users behind it, and invalid ones get 429 instead of 401. On a
public operation refused credentials are ignored instead and the request runs
anonymous. Requests without credentials are not affected by this counter.

The user's limit is their ``ratelimit`` grant row when they have one, else
``ratelimit_default``, which is also what the grants service reports as the default
``ratelimit`` grant (a ``default_grants.ratelimit`` that disagrees with it is refused
at start-up, so exactly one setting decides).

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
from collections.abc import Iterable
from typing import Any

import redis.exceptions

from apicrud.errors import ServiceUnavailable, StartupError, TooManyRequests
from apicrud.i18n import N_
from apicrud.pipeline import has_credentials
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
        self.failure_limit = int(settings.ratelimit_auth_failures)
        self.cookie_name = settings.cookie_name
        self.fail_open = settings.ratelimit_fail == "open"
        self.trusted = parse_networks(settings.trusted_proxies)
        self._fail_lock = threading.Lock()
        self._fail_logged = 0.0
        self._fail_count = 0

    def limit_for(self, uid: str) -> int:
        """The user's requests per interval: their grant, else ``ratelimit_default``."""
        grants = self.services.grants
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

    # -- failed credentials, per client address --------------------------------------
    def _failure_subject(self, request: Any) -> str:
        addr = client_address(request.remote_addr, request.headers.get("X-Forwarded-For"),
                              self.trusted)
        return f"authfail:{addr}"

    def _counts_failures(self, request: Any, operation: Any) -> bool:
        if self.failure_limit <= 0:
            return False
        if operation is not None and operation.extensions.get("x-ratelimit") is False:
            return False  # /health answers whatever happens to Redis
        return has_credentials(request, self.cookie_name)

    def credential_guard(self, request: Any, operation: Any) -> bool | None:
        """Before credentials are checked: refuse (or, on a public operation, ignore)
        them when the client address has used up its failed credentials."""
        if not self._counts_failures(request, operation):
            return None
        subject = self._failure_subject(request)
        try:
            count, reset = self.limiter.current(subject)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            self._unavailable(exc, refuse=False)
            return None
        if count < self.failure_limit:
            return None
        if request.headers.get("X-API-KEY") is None:
            # a session credential costs what this counter did: check it (valid ones
            # pass); a failure is answered 429 by credential_failed
            request.environ[_OVER_LIMIT] = reset
            return None
        if operation is not None and operation.public:
            return False  # run anonymous, without looking the key up
        raise self._refusal(subject, reset)

    def _refusal(self, subject: str, reset: int) -> TooManyRequests:
        log.info("failed credentials limit exceeded", extra={
            "event": "ratelimit_auth_failures", "subject": subject,
            "limit": self.failure_limit})
        return TooManyRequests(
            N_("too many requests with invalid credentials from this address (at most "
               "%(limit)s per %(interval)s seconds); try again in %(reset)s seconds",
               limit=self.failure_limit, interval=self.limiter.interval, reset=reset),
            headers={"Retry-After": str(reset)}, limit="ratelimit_auth_failures")

    def credential_failed(self, request: Any, operation: Any, _problem: Exception) -> None:
        """After a credential failed: count it against the client address."""
        if not self._counts_failures(request, operation):
            return
        try:
            self.limiter.hit(self._failure_subject(request), self.failure_limit)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            self._unavailable(exc, refuse=False)
        reset = request.environ.get(_OVER_LIMIT)
        if reset is not None and not (operation is not None and operation.public):
            raise self._refusal(self._failure_subject(request), reset)

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
                N_("rate limit of %(limit)s requests per %(interval)s seconds reached; try "
                   "again in %(reset)s seconds", limit=decision.limit,
                   interval=decision.interval, reset=decision.reset),
                headers=headers, limit="ratelimit")

    def _unavailable(self, exc: Exception, refuse: bool = True) -> None:
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
        if refuse and not self.fail_open:
            raise ServiceUnavailable(N_("rate limiting is unavailable (redis is down)"))


#: WSGI environ key: the client address is past its failed credentials (seconds to reset)
_OVER_LIMIT = "apicrud.auth_failures_exceeded"


def init_app(services: Any) -> None:
    """Install the guard (setting ``ratelimit_enable``); exposed as ``services.ratelimit``."""
    settings = services.settings
    services.ratelimit = None
    grants = services.grants
    if grants is not None:  # ratelimit_default is the default of the ratelimit grant
        given = grants.defaults.get("ratelimit")
        if given is not None and given != settings.ratelimit_default:
            raise StartupError([
                f"setting default_grants.ratelimit ({given}) disagrees with "
                f"ratelimit_default ({settings.ratelimit_default}): set ratelimit_default"])
        grants.defaults["ratelimit"] = int(settings.ratelimit_default)
    if not settings.ratelimit_enable:
        return
    try:
        limiter = WindowLimiter(services.redis.client, settings.ratelimit_interval)
        guard = RateLimit(services, limiter)
    except ValueError as exc:
        raise StartupError([f"trusted_proxies: {exc}"]) from None
    services.ratelimit = guard
    services.pipeline.guards.append(guard)
    services.pipeline.credential_guards.append(guard.credential_guard)
    services.pipeline.credential_failures.append(guard.credential_failed)
