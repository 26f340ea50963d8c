"""Usage metrics, grants and Prometheus exposition (a request-path component).

``init_app(services)`` adds to ``services``:

- ``metrics``: :class:`~apicrud.metrics.usage.Metrics` (Redis-held values);
- ``grants``: :class:`~apicrud.metrics.grants.Grants` (``grants.get(uid, "ratelimit")``);
- ``prometheus``: the registry behind ``GET /metrics``;
- ``notify``: the callable that tells a user about their usage, unless one is set
  already (by default: the messaging outbox, see :func:`default_notifier`);

and registers the grant create check (which gives back per-period units used by a
request whose write is not committed) and the request-metrics observer.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from apicrud.config.loader import thaw
from apicrud.errors import StartupError, required
from apicrud.metrics.grants import GrantChecks, Grants, check_defaults
from apicrud.metrics.prometheus import Exposition, RequestObserver
from apicrud.metrics.usage import Metrics, check_definitions

if TYPE_CHECKING:
    from apicrud.services import Services

log = logging.getLogger("apicrud.metrics")

__all__ = ["init_app", "Metrics", "Grants", "default_notifier"]


def default_notifier(services: Services) -> Callable[..., Any]:
    """Queue a usage notice to the user's address through the messaging outbox.

    The notice goes through ``services.outbox`` (rendered, sealed and queued for the
    worker; never sent inside the request), addressed to the ``identity`` (email) of the
    person a grant belongs to. Without an outbox the notice is only logged.
    """
    def notify(uid: str, template: str, **values: Any) -> None:
        outbox = services.outbox
        person = _person_model(services)
        if outbox is None or person is None:
            log.info("usage notice %s for %s: no outbox", template, uid)
            return
        with services.db.session() as session:
            row = session.execute(select(person.identity, person.name)
                                  .where(person.id == uid)).first()
        if row is None or not row[0]:
            log.info("usage notice %s for %s: no address", template, uid)
            return
        service = services.spec.get("info", {}).get("title", "apicrud")
        outbox.send(row[0], template, name=row[1], service=service, **values)

    return notify


def _person_model(services: Services) -> Any:
    """The model grants' ``uid`` points at (a person with ``identity`` and ``name``)."""
    grant = services.resources.get("grant")
    table = grant.references.get("uid") if grant is not None else None
    res = services.resource_for_table(table) if table else None
    model = res.model if res is not None else None
    return model if model is not None and hasattr(model, "identity") else None


def init_app(services: Services) -> None:
    settings = services.settings
    definitions, problems = check_definitions(thaw(settings.metrics))
    defaults, more = check_defaults(thaw(settings.default_grants))
    problems += more
    for d in definitions.values():
        if d.style == "grant" and d.name not in defaults:
            problems.append(f"setting metrics.{d.name}: a grant needs a value in "
                            "default_grants")
        if d.resource and d.resource not in services.resources:
            problems.append(f"setting metrics.{d.name}: resource {d.resource!r} is not "
                            "declared")
    if problems:
        raise StartupError(problems)
    # the registry's instance id (setting instance_id, else <hostname>:<port>): gunicorn
    # workers of one instance share it, so their request counts add up in one series
    instance = getattr(settings, "instance_id", "") or f"{socket.gethostname()}:{settings.port}"
    services.metrics = Metrics(services.redis, definitions, instance=instance,
                               flush_interval=settings.metrics_flush_interval)
    grant = services.resources.get("grant")
    services.grants = Grants(defaults, services.db, services.redis,
                             grant.model if grant is not None else None,
                             ttl=settings.grants_cache_ttl)
    services.prometheus = Exposition(services.metrics, settings.metrics_namespace)
    if services.notify is None:
        services.notify = default_notifier(services)
    checks = GrantChecks(services, services.grants, services.metrics,
                         notify=lambda **kw: required(services.notify, "notify")(**kw))
    services.pipeline.create_checks.append(checks)
    services.pipeline.observers.append(RequestObserver(services.metrics))
    services.closers.append(services.metrics.close)  # flush buffered counts on shutdown
