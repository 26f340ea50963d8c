"""Prometheus exposition with prometheus-client: its registry, collectors and encoders.

What ``GET /metrics`` shows (namespace from setting ``metrics_namespace``):

- request metrics of this instance: ``<ns>_http_requests_total``,
  ``<ns>_http_request_errors_total`` (status 400 and above) and the latency histogram
  ``<ns>_http_request_duration_seconds``, labelled by resource, method and status;
- login attempts ``<ns>_logins_total{result}`` (success, failure, locked_out, error);
- every other declared metric: sitewide ones with their labels, per-user counters and
  grants as one sitewide total (per-user values would be one series per user: they are
  in ``GET /metric``), grants as ``<ns>_<name>_used_total``;
- ``process_*`` and ``python_*`` of the process answering the scrape.

Several worker processes: the request metrics are not kept in prometheus-client's
in-process metric objects (each gunicorn worker would answer with its own share) nor in
its multiprocess mode (files in ``PROMETHEUS_MULTIPROC_DIR`` that the server must wipe
at start and mark dead on worker exit: hooks in every way of serving the app). They go
to Redis, like the usage metrics, summed in-process and flushed about once a second, so
whichever worker answers a scrape reports the whole instance. A custom collector reads
them back at scrape time; ``instance``-scoped series are reported only by their own
instance, so Prometheus can scrape every instance without counting anything twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from redis.exceptions import RedisError

from apicrud.metrics.keys import MetricDef
from apicrud.metrics.usage import Metrics, Sample
from apicrud.pipeline import RequestRecord

log = logging.getLogger("apicrud.metrics")

#: latency buckets in seconds (prometheus-client's defaults)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
DURATION = "http_request_duration_seconds"
REQUEST_LABELS = ("method", "resource", "status")
#: operations whose outcome feeds the ``logins`` metric
LOGIN_OPERATIONS = frozenset({"auth.login"})


def login_result(status: int) -> str:
    if status < 400:
        return "success"
    if status == 401:
        return "failure"
    if status == 429:
        return "locked_out"
    return "error"


class RequestObserver:
    """Pipeline observer: counts every answered request into Redis-held metrics."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def __call__(self, rec: RequestRecord) -> None:
        defs = self.metrics.definitions
        labels = {"method": rec.method, "resource": rec.resource or "",
                  "status": str(rec.status)}
        if "http_requests" in defs:
            self.metrics.add("http_requests", labels=labels)
        if rec.status >= 400 and "http_request_errors" in defs:
            self.metrics.add("http_request_errors", labels=labels)
        self.metrics.observe(DURATION, rec.duration, BUCKETS, labels)
        if rec.principal.authenticated and "api_calls" in defs:
            self.metrics.add("api_calls", uid=rec.principal.uid)
        if rec.operation_id in LOGIN_OPERATIONS and "logins" in defs:
            self.metrics.add("logins", labels={"result": login_result(rec.status)})


def _label_names(samples: Iterable[Sample]) -> list[str]:
    names: set[str] = set()
    for s in samples:
        names |= s.labels.keys()
    return sorted(names)


class UsageCollector(Collector):
    """Reads the Redis-held metrics at scrape time (see the module docstring)."""

    def __init__(self, metrics: Metrics, namespace: str) -> None:
        self.metrics = metrics
        self.prefix = f"{namespace}_" if namespace else ""

    def collect(self) -> Iterator:
        for d in list(self.metrics.definitions.values()):
            try:
                family = self._family(d)
            except RedisError:
                raise  # Redis is away: the scrape fails (503), Prometheus marks the target down
            except Exception:  # one bad value must not cost the whole scrape
                log.warning("metric %s cannot be exported", d.name, exc_info=True)
                continue
            if family is not None:
                yield family
        yield self._histogram()

    def _family(self, d: MetricDef) -> Metric | None:
        base = self.prefix + d.name
        if d.scope == "user":
            if d.style == "gauge":
                return None  # per-user values only: GET /metric
            total = self.metrics.total(d.name) or 0
            if d.style == "grant":
                return CounterMetricFamily(
                    base + "_used", f"{d.description} (units used by all users this "
                    f"{d.period})" if d.period != "indefinite" else d.description,
                    value=total)
            return CounterMetricFamily(base, d.description, value=total)
        samples = self.metrics.series(d.name)
        if d.scope == "instance":
            samples = [Sample(s.name, {k: v for k, v in s.labels.items() if k != "instance"},
                              s.value, s.expires)
                       for s in samples if s.labels.get("instance") == self.metrics.instance]
        names = _label_names(samples)
        cls = CounterMetricFamily if d.style == "counter" else GaugeMetricFamily
        family = cls(base, d.description, labels=names)
        for s in samples:
            family.add_metric([s.labels.get(n, "") for n in names], s.value)
        return family

    def _histogram(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            self.prefix + DURATION, "Time to answer a request, by resource, method and status",
            labels=list(REQUEST_LABELS))
        for labels, fields in self.metrics.histogram(DURATION):
            if labels.pop("instance", None) != self.metrics.instance:
                continue
            cumulative, buckets = 0.0, []
            for bound in BUCKETS:
                cumulative += fields.get(repr(bound), 0)
                buckets.append((floatToGoString(bound), cumulative))
            buckets.append(("+Inf", fields.get("count", 0)))
            family.add_metric([labels.get(n, "") for n in REQUEST_LABELS], buckets,
                              fields.get("sum", 0))
        return family


class Exposition:
    """One prometheus-client registry per application; renders a scrape."""

    def __init__(self, metrics: Metrics, namespace: str) -> None:
        self.metrics = metrics
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(UsageCollector(metrics, namespace))

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """(body, content type) in the format the scraper asked for (Accept header)."""
        self.metrics.flush()  # this process's latest counts are part of the answer
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
