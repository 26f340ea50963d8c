"""Structured logs: one line per request, and a JSON formatter for every log record.

The request observer writes one record per finished request to the logger
``apicrud.request`` at INFO. Its message reads well as text (``GET /api/v1/list 200
3.1ms``); its fields (``extra``) carry the detail: ``request_id``, ``method``, ``path``
(no query string: filters may hold personal data), ``operation``, ``resource``,
``action``, ``uid`` and ``auth`` (how the caller authenticated; never a token),
``status``, ``duration_ms`` and ``remote_addr``.

:class:`JsonFormatter` renders any record as one JSON object per line with ``time``,
``level``, ``logger``, ``message`` and every ``extra`` field, so the login events and
rate-limit refusals logged elsewhere arrive structured too. :func:`configure_logging`
installs it (setting ``log_format``: ``json`` or ``text``) for ``apicrud serve``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from apicrud.pipeline import RequestRecord

REQUEST_LOGGER = "apicrud.request"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# attributes every LogRecord has; anything else on a record came from ``extra=``
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, then the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        # default=str: a stray non-JSON value must not cost us the whole line
        return json.dumps(out, default=str, separators=(",", ":"))


def configure_logging(settings: Any, stream: Any = None) -> None:
    """Format the root logger's output by setting ``log_format``; level by ``log_level``.

    Request lines (``apicrud.request``, INFO) are written even when ``log_level`` is
    higher, unless setting ``request_log`` is false: they are the access log.
    """
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(stream or sys.stderr))
    formatter = JsonFormatter() if settings.log_format == "json" else \
        logging.Formatter(TEXT_FORMAT)
    for handler in root.handlers:
        handler.setFormatter(formatter)
    root.setLevel(settings.log_level.upper())
    request_logger = logging.getLogger(REQUEST_LOGGER)
    request_logger.setLevel(logging.INFO if settings.request_log else logging.CRITICAL + 1)


class RequestLog:
    """The observer: one structured record per request."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger(REQUEST_LOGGER)

    def __call__(self, rec: RequestRecord) -> None:
        if not self.log.isEnabledFor(logging.INFO):
            return  # nothing listens: skip building the record
        duration_ms = round(rec.duration * 1000, 2)
        principal = rec.principal
        self.log.info("%s %s %d %.1fms", rec.method, rec.path, rec.status, duration_ms, extra={
            "event": "request",
            "request_id": rec.request_id,
            "method": rec.method,
            "path": rec.path,
            "operation": rec.operation_id,
            "resource": rec.resource,
            "action": rec.action,
            "uid": principal.uid,
            "auth": principal.method if principal.authenticated else None,
            "status": rec.status,
            "duration_ms": duration_ms,
            "remote_addr": rec.remote_addr,
        })


def init_app(services: Any) -> None:
    """Register the request log as an observer (setting ``request_log``)."""
    if services.settings.request_log:
        services.pipeline.observers.append(RequestLog())
