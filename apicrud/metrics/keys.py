"""Declarations and key layout of the Redis-held metrics (see :mod:`apicrud.metrics.usage`).

``check_definitions`` validates the ``metrics`` setting; ``period_end`` gives the UTC
calendar end of a period; label sets are spelled one way only (sorted ``k=v`` pairs,
with ``%``, ``,`` and ``=`` escaped in values), so one label set is always one key.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apicrud import redis_keys

PREFIX = redis_keys.prefix("metric")
SERIES = redis_keys.prefix("metric-series")  # set of label strings per non-user metric (for export)
NOTIFIED = redis_keys.prefix("metric-notified")
SCOPES = ("user", "instance", "sitewide")
STYLES = ("counter", "gauge", "grant")
PERIODS = ("hour", "day", "week", "month", "indefinite")
NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
FIELDS = {"scope", "style", "period", "notify", "description", "resource"}


@dataclass(frozen=True)
class MetricDef:
    """One declared metric (an entry of the ``metrics`` setting)."""

    name: str
    scope: str
    style: str
    period: str
    notify: float | None
    description: str
    resource: str | None = None


def check_definitions(raw: Mapping[str, Any]) -> tuple[dict[str, MetricDef], list[str]]:
    """Validate the ``metrics`` setting; returns (definitions, problems)."""
    out: dict[str, MetricDef] = {}
    problems: list[str] = []
    for name, spec in (raw or {}).items():
        where = f"setting metrics.{name}"
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            problems.append(f"{where}: name must match [a-z][a-z0-9_]*")
            continue
        if not isinstance(spec, Mapping):
            problems.append(f"{where}: must be an object")
            continue
        bad = sorted(set(spec) - FIELDS)
        if bad:
            problems.append(f"{where}: unknown field(s) {', '.join(map(str, bad))}")
        scope = spec.get("scope", "user")
        style = spec.get("style", "counter")
        period = spec.get("period", "indefinite")
        notify = spec.get("notify")
        for field, value, allowed in (("scope", scope, SCOPES), ("style", style, STYLES),
                                      ("period", period, PERIODS)):
            if value not in allowed:
                problems.append(f"{where}: {field} must be one of {', '.join(allowed)}")
        if notify is not None and (isinstance(notify, bool) or
                                   not isinstance(notify, (int, float)) or
                                   not 0 < notify <= 100):
            problems.append(f"{where}: notify must be a percentage (1 to 100) or null")
        if style == "grant" and scope != "user":
            problems.append(f"{where}: a grant is per user (scope user)")
        if notify is not None and style != "grant":
            problems.append(f"{where}: notify applies only to style grant")
        if style != "counter" and name.endswith("_total"):
            problems.append(f"{where}: only counters may end in _total")
        out[name] = MetricDef(name, scope, style, period, notify,
                              str(spec.get("description") or name.replace("_", " ")),
                              spec.get("resource"))
    return out, problems


def period_end(period: str, now: float | None = None) -> int | None:
    """Epoch second at which the calendar period (UTC) holding ``now`` ends."""
    if period == "indefinite":
        return None
    t = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    if period == "hour":
        end = t.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    elif period == "day":
        end = t.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    elif period == "week":  # ISO weeks start on Monday
        start = t.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=7 - start.weekday())
    elif period == "month":
        first = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (first + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown period {period!r}")
    return int(end.timestamp())


def _escape(value: Any) -> str:
    return str(value).replace("%", "%25").replace(",", "%2C").replace("=", "%3D")


def _unescape(value: str) -> str:
    return value.replace("%2C", ",").replace("%3D", "=").replace("%25", "%")


def label_string(labels: Mapping[str, Any]) -> str:
    """Sorted ``k=v,k=v``: one label set, one spelling, one key."""
    return ",".join(f"{k}={_escape(labels[k])}" for k in sorted(labels))


def parse_labels(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(",") if text else ():
        k, _, v = part.partition("=")
        out[k] = _unescape(v)
    return out


def split_key(key: str) -> tuple[str, dict[str, str]] | None:
    """``apicrud:metric:<name>:<labels>`` -> (name, labels)."""
    if not key.startswith(PREFIX):
        return None
    name, sep, labels = key[len(PREFIX):].partition(":")
    return (name, parse_labels(labels)) if sep else None
