"""Usage metrics held in Redis: counters, gauges and per-period grants.

Each metric is declared in the ``metrics`` setting (name -> scope, style, period,
notify, description, and optionally the ``resource`` whose creates use a grant).
Values live in Redis, one key per metric and sorted label set::

    apicrud:metric:<name>:<k1=v1,k2=v2>

so every process and instance adds to the same numbers, and a user who never comes
back costs nothing once their period keys expire. A key of a periodic metric expires
at the end of its calendar period (UTC hour, day, ISO week, month), set when the key
is created: the next use after that starts a fresh period, without any cleanup job.

Scopes: ``user`` keys carry only ``uid`` (plus an unlabelled sitewide total, kept for
Prometheus, which should not get one series per user); ``instance`` keys carry
``instance`` and the caller's labels; ``sitewide`` keys only the caller's labels.

Counters seen on every request (calls per user, request counts, latencies) are summed
in the process and written in one pipeline every ``flush_interval`` seconds by a
background thread (and before every scrape), so the request path never waits on Redis
for them. Grants are checked and used atomically in Redis (a Lua script), never
buffered: two instances cannot both spend the last unit.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from apicrud.metrics.keys import (
    NOTIFIED,
    PREFIX,
    SERIES,
    MetricDef,
    check_definitions,
    label_string,
    parse_labels,
    period_end,
    split_key,
)

if TYPE_CHECKING:
    from redis import Redis

    from apicrud.redis_client import RedisProvider

__all__ = ["Metrics", "Sample", "Consumed", "MetricDef", "check_definitions", "period_end",
           "label_string", "parse_labels", "split_key", "PREFIX", "SERIES", "NOTIFIED"]

log = logging.getLogger("apicrud.metrics")

# KEYS[1]: counter; ARGV: amount, expire-at (0: never). Sets the expiry only on the
# write that creates the key, so a period ends when it began to end.
_INCR = """
local v = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if tonumber(ARGV[2]) > 0 and redis.call('TTL', KEYS[1]) == -1 then
  redis.call('EXPIREAT', KEYS[1], ARGV[2])
end
return v
"""
# KEYS[1]: used units of a grant; ARGV: amount, limit, expire-at (0: never).
# -> {1 if granted, units used, seconds until the period ends (-1: never)}
_CONSUME = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
if used + amount > tonumber(ARGV[2]) then
  return {0, tostring(used), redis.call('TTL', KEYS[1])}
end
used = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if tonumber(ARGV[3]) > 0 and redis.call('TTL', KEYS[1]) == -1 then
  redis.call('EXPIREAT', KEYS[1], ARGV[3])
end
return {1, used, redis.call('TTL', KEYS[1])}
"""
# give units back (a request that used them failed), unless the period is over already
_REFUND = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
end
return false
"""


@dataclass(frozen=True)
class Sample:
    """One stored value: a metric, its labels, and when its period ends."""

    name: str
    labels: dict[str, str]
    value: float
    expires: int | None  # epoch seconds; None: never


@dataclass(frozen=True)
class Consumed:
    ok: bool
    used: float
    limit: float
    reset_in: int | None  # seconds until the period ends; None: never


def _text(raw: bytes | str) -> str:
    """A member of a Redis set as text (the client answers bytes)."""
    return raw.decode() if isinstance(raw, bytes) else raw


#: memoised key plans past this many (one per user of a per-user counter) start again
_PLANS_KEPT = 10_000


def _number(raw: Any) -> float:
    value = float(raw.decode() if isinstance(raw, bytes) else raw)
    return int(value) if value.is_integer() else value


#: forks this process has been made by (0: not a forked child): a child starts its own
#: flush thread, the parent's did not come along
_FORKS = [0]


def _forked() -> None:
    _FORKS[0] += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


class Metrics:
    """Store and read usage metrics; see the module docstring for the key layout."""

    def __init__(self, provider: RedisProvider, definitions: Mapping[str, MetricDef], *,
                 instance: str, flush_interval: float = 1.0) -> None:
        self.provider = provider  # a RedisProvider: its client survives reconnects
        self.definitions = dict(definitions)
        self.instance = instance
        self.flush_interval = flush_interval
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, int], float] = {}  # (key, expire-at) -> amount
        self._hashes: dict[str, dict[str, float]] = {}  # histogram key -> field -> amount
        self._series: set[tuple[str, str]] = set()  # (name, label string) to index
        # what add/observe work out from (name, uid, labels) once: see _counter_plan
        self._plans: dict[tuple, tuple[str, str, str | None, tuple[str, str] | None]] = {}
        # period -> (a time in it, its end): the end holds until then
        self._ends: dict[str, tuple[float, int]] = {}
        self._forks = -1  # the process's fork count when the flush thread started
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._failing = False
        client = provider.client
        self._incr = client.register_script(_INCR)
        self._consume = client.register_script(_CONSUME)
        self._refund = client.register_script(_REFUND)

    @property
    def redis(self) -> Redis:
        return self.provider.client

    def declare(self, name: str, **spec: Any) -> MetricDef:
        """Declare a metric from code (applications, tests); same fields as the setting."""
        defs, problems = check_definitions({name: spec})
        if problems:
            raise ValueError("; ".join(problems))
        self.definitions[name] = defs[name]
        self._plans.clear()  # a metric declared again may change scope or period
        return defs[name]

    def key(self, name: str, labels: Mapping[str, Any]) -> str:
        return f"{PREFIX}{name}:{label_string(labels)}"

    def _labels(self, d: MetricDef, uid: str | None, labels: Mapping[str, Any] | None) -> dict:
        if d.scope == "user":
            if not uid:
                raise ValueError(f"metric {d.name} is per user: give uid")
            return {"uid": uid}
        out = dict(labels or {})
        if d.scope == "instance":
            out["instance"] = self.instance
        return out

    def _define(self, name: str) -> MetricDef:
        try:
            return self.definitions[name]
        except KeyError:
            raise KeyError(f"metric {name!r} is not declared (setting metrics)") from None

    def _period_end(self, period: str) -> int:
        """``period_end(period) or 0``, worked out once per period: every moment from
        one in a period to its end is in that period, so has that end."""
        if period == "indefinite":
            return 0
        now = time.time()
        known = self._ends.get(period)
        if known is not None and known[0] <= now < known[1]:
            return known[1]
        end = period_end(period, now) or 0
        self._ends[period] = (now, end)
        return end

    def _counter_plan(self, name: str, uid: str | None, labels: Mapping[str, Any] | None
                      ) -> tuple[str, str, str | None, tuple[str, str] | None]:
        """(period, key, the sitewide total's key or None, the series to index or None)
        of a counter's value for these labels; the same every time, so kept."""
        try:
            memo: tuple | None = ("counter", name, uid, tuple(labels.items()) if labels else ())
            plan = self._plans.get(memo)  # type: ignore[arg-type]
        except TypeError:  # an unhashable label value: worked out each time
            memo = plan = None
        if plan is not None:
            return plan
        d = self._define(name)
        if d.style != "counter":
            raise ValueError(f"metric {name} is a {d.style}, not a counter")
        lab = self._labels(d, uid, labels)
        plan = (d.period, self.key(name, lab),
                self.key(name, {}) if d.scope == "user" else None,  # the total Prometheus sees
                None if d.scope == "user" else (name, label_string(lab)))
        if memo is not None:
            if len(self._plans) >= _PLANS_KEPT:
                self._plans.clear()
            self._plans[memo] = plan
        return plan

    # -- writing ----------------------------------------------------------------------
    def add(self, name: str, amount: float = 1, *, uid: str | None = None,
            labels: Mapping[str, Any] | None = None) -> None:
        """Add to a counter (buffered: written within ``flush_interval`` seconds)."""
        period, key, total, series = self._counter_plan(name, uid, labels)
        expire = self._period_end(period)
        with self._lock:
            self._start()
            self._bump(key, expire, amount)
            if total is not None:
                self._bump(total, expire, amount)
            if series is not None:
                self._series.add(series)

    def _bump(self, key: str, expire: int, amount: float) -> None:
        self._counters[(key, expire)] = self._counters.get((key, expire), 0) + amount

    def set(self, name: str, value: float, *, uid: str | None = None,
            labels: Mapping[str, Any] | None = None) -> None:
        """Set a gauge now (not buffered)."""
        d = self._define(name)
        if d.style != "gauge":
            raise ValueError(f"metric {name} is a {d.style}, not a gauge")
        lab = self._labels(d, uid, labels)
        expire = period_end(d.period)
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self.key(name, lab), value, exat=expire)
        if d.scope != "user":
            pipe.sadd(SERIES + name, label_string(lab))
        pipe.execute()

    def observe(self, name: str, value: float, buckets: tuple[float, ...],
                labels: Mapping[str, Any]) -> None:
        """Add one observation to a histogram of this instance (buffered)."""
        try:
            memo: tuple | None = ("histogram", name, tuple(labels.items()))
            plan = self._plans.get(memo)  # type: ignore[arg-type]
        except TypeError:  # an unhashable label value: worked out each time
            memo = plan = None
        if plan is None:
            lab = {**labels, "instance": self.instance}
            plan = ("", self.key(name, lab), None, (name, label_string(lab)))
            if memo is not None:
                if len(self._plans) >= _PLANS_KEPT:
                    self._plans.clear()
                self._plans[memo] = plan
        _, key, _, series = plan
        le = next((f"{b!r}" for b in buckets if value <= b), "+Inf")
        with self._lock:
            self._start()
            fields = self._hashes.setdefault(key, {})
            fields[le] = fields.get(le, 0) + 1
            fields["count"] = fields.get("count", 0) + 1
            fields["sum"] = fields.get("sum", 0) + value
            self._series.add(series)  # type: ignore[arg-type]

    def flush(self) -> None:
        """Write the buffered counters in one pipeline; keep them if Redis is away."""
        with self._lock:
            counters, self._counters = self._counters, {}
            hashes, self._hashes = self._hashes, {}
            series, self._series = self._series, set()
        if not (counters or hashes or series):
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            for (key, expire), amount in counters.items():
                self._incr(keys=[key], args=[amount, expire], client=pipe)
            for key, fields in hashes.items():
                for field, amount in fields.items():
                    if isinstance(amount, int):
                        pipe.hincrby(key, field, amount)
                    else:
                        pipe.hincrbyfloat(key, field, amount)
            for name, labels in series:
                pipe.sadd(SERIES + name, labels)
            pipe.execute()
        except Exception as exc:  # noqa: BLE001  Redis away: keep the numbers for the next attempt
            with self._lock:
                for k, amount in counters.items():
                    self._counters[k] = self._counters.get(k, 0) + amount
                for key, fields in hashes.items():
                    mine = self._hashes.setdefault(key, {})
                    for field, amount in fields.items():
                        mine[field] = mine.get(field, 0) + amount
                self._series |= series
            if not self._failing:
                log.warning("metrics: cannot write to redis (%s); will retry", exc)
            self._failing = True
            return
        if self._failing:
            log.info("metrics: writing to redis again")
        self._failing = False

    def _start(self) -> None:
        """Start the flush thread in this process (again after a fork). Holds _lock."""
        if self._forks == _FORKS[0]:  # (os.getpid() is a system call: on every add)
            return
        self._forks = _FORKS[0]
        self._thread = threading.Thread(target=self._run, name="apicrud-metrics",
                                        daemon=True)
        self._thread.start()
        atexit.register(self._final_flush)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            if getattr(self.provider, "closed", False):
                return
            self.flush()

    def _final_flush(self) -> None:
        if not getattr(self.provider, "closed", False):
            try:
                self.flush()
            except Exception:  # exiting: nothing more to do than say so
                log.debug("final flush of the metrics failed", exc_info=True)

    def close(self) -> None:
        """Write what is buffered and stop the flush thread."""
        self._stop.set()
        self._final_flush()
        atexit.unregister(self._final_flush)  # a no-op when it is not registered

    # -- grants -------------------------------------------------------------------------
    def consume(self, name: str, uid: str, limit: float, amount: float = 1) -> Consumed:
        """Use ``amount`` units of a per-period grant if ``limit`` allows, atomically."""
        d = self._define(name)
        if d.style != "grant":
            raise ValueError(f"metric {name} is a {d.style}, not a grant")
        expire = period_end(d.period) or 0
        ok, used, ttl = self._consume(keys=[self.key(name, {"uid": uid})],
                                      args=[amount, limit, expire])
        ttl = int(ttl)
        reset_in = ttl if ttl >= 0 else (expire - int(time.time()) if expire else None)
        if ok:
            with self._lock:
                self._start()
                self._bump(self.key(name, {}), expire, amount)
        return Consumed(bool(ok), _number(used), limit, reset_in)

    def refund(self, name: str, uid: str, amount: float = 1) -> None:
        """Give back units used by a request that then failed."""
        self._refund(keys=[self.key(name, {"uid": uid})], args=[-amount])
        d = self.definitions.get(name)
        if d is not None:
            with self._lock:
                self._bump(self.key(name, {}), period_end(d.period) or 0, -amount)

    def notify_once(self, name: str, uid: str) -> bool:
        """True the first time in the current period this is asked for (name, uid)."""
        d = self._define(name)
        expire = period_end(d.period)
        return bool(self.redis.set(f"{NOTIFIED}{name}:uid={uid}", 1, nx=True, exat=expire))

    # -- reading ------------------------------------------------------------------------
    def _read(self, keys: list[str], missing: bool = True) -> Iterator[Sample]:
        """Values and expiries of keys; absent keys read as 0 when ``missing``."""
        if not keys:
            return
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
            pipe.pttl(key)
        replies = pipe.execute(raise_on_error=False)
        now = time.time()
        for i, key in enumerate(keys):
            raw, ttl = replies[2 * i], replies[2 * i + 1]
            parts = split_key(key)
            if parts is None or isinstance(raw, Exception) or (raw is None and not missing):
                continue  # a histogram hash (not a plain value), or gone meanwhile
            # expiries are whole seconds (EXPIREAT): round off the time the reply took
            expires = round(now + ttl / 1000) if isinstance(ttl, int) and ttl >= 0 else None
            yield Sample(parts[0], parts[1], _number(raw) if raw is not None else 0, expires)

    def for_user(self, uid: str) -> list[Sample]:
        """Every user-scope metric of one user, unused ones as 0."""
        names = [n for n, d in self.definitions.items() if d.scope == "user"]
        return list(self._read([self.key(n, {"uid": uid}) for n in names]))

    def scan(self) -> list[Sample]:
        """Every stored value of a declared metric (administrators' view)."""
        keys = []
        for raw in self.redis.scan_iter(match=PREFIX + "*", count=1000):
            key = raw.decode()
            parts = split_key(key)
            if parts and parts[0] in self.definitions:
                keys.append(key)
        return list(self._read(keys, missing=False))

    def series(self, name: str) -> list[Sample]:
        """The label sets of a non-user metric written by any instance, with values."""
        members = sorted(_text(m) for m in self.redis.smembers(SERIES + name))
        return list(self._read([f"{PREFIX}{name}:{m}" for m in members], missing=False))

    def histogram(self, name: str) -> list[tuple[dict[str, str], dict[str, float]]]:
        members = sorted(_text(m) for m in self.redis.smembers(SERIES + name))
        pipe = self.redis.pipeline(transaction=False)
        for m in members:
            pipe.hgetall(f"{PREFIX}{name}:{m}")
        out = []
        for m, fields in zip(members, pipe.execute(), strict=True):
            if fields:
                out.append((parse_labels(m), {k.decode(): _number(v)
                                              for k, v in fields.items()}))
        return out

    def total(self, name: str) -> float | None:
        """The sitewide total of a user-scope metric in its current period."""
        raw = self.redis.get(self.key(name, {}))
        return _number(raw) if raw is not None else None
