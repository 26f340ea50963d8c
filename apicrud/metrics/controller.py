"""Controllers: ``/metric`` (usage view), ``/metrics`` (Prometheus) and ``/grant``.

The usage view is a find like any other (``filter``, ``sort``, ``limit``, ``offset``,
``cursor_next``, ``count``), over values held in Redis instead of rows: a user sees
their own per-user metrics, unused ones as 0, with limit and remaining units for
grants; an administrator sees every stored value, or one user's with ``{"uid": ...}``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from apicrud.context import Reply, RequestContext
from apicrud.crud import paging
from apicrud.crud.controller import BasicCRUD
from apicrud.db import query as q
from apicrud.db.base import iso_utc, naive_utc
from apicrud.errors import BadRequest, Forbidden, ValidationProblem, required
from apicrud.i18n import N_, N_as
from apicrud.metrics.grants import NUMBER_RULE, number

if TYPE_CHECKING:
    from apicrud.crud.registry import ResourceSpec
    from apicrud.metrics.grants import Grants
    from apicrud.metrics.usage import Metrics, Sample
    from apicrud.services import Services

FIELDS = ("id", "name", "scope", "style", "period", "uid", "value", "limit", "remaining",
          "expires", "description")
MAX_UIDS = 100


def _like(pattern: str) -> re.Pattern:
    return re.compile(".*".join(re.escape(p) for p in pattern.split("%")), re.S)


def _matches(value: Any, wanted: Any) -> bool:
    if wanted is None:
        return value is None
    if wanted == "*":
        return value is not None
    if isinstance(wanted, list):
        return any(_matches(value, w) for w in wanted if w is not None and w != "*") or \
            (None in wanted and value is None)
    if isinstance(wanted, str) and "%" in wanted:
        return isinstance(value, str) and _like(wanted).fullmatch(value) is not None
    if isinstance(wanted, bool) or isinstance(value, bool):
        return wanted is value
    return value == wanted


def _sort_key(item: dict[str, Any], field: str) -> tuple[bool, Any]:
    value = item.get(field)
    return (value is None, value if value is not None else 0)


class MetricController:
    """``GET /metric`` (usage) and ``GET /metrics`` (Prometheus text)."""

    def __init__(self, resource: ResourceSpec, services: Services) -> None:
        self.services = services

    # apicrud.metrics installs these with this controller's resource
    @property
    def _metrics(self) -> Metrics:
        return required(self.services.metrics, "metrics")

    @property
    def _grants(self) -> Grants:
        return required(self.services.grants, "grants")

    def expose(self, ctx: RequestContext) -> Reply:
        """Prometheus exposition: administrators, and their API keys scoped ``metrics``."""
        principal = ctx.principal
        if not principal.is_admin or (principal.scopes is not None and
                                      "metrics" not in principal.scopes):
            raise Forbidden(N_("metrics are for administrators (API keys need scope metrics)"))
        exposition = required(self.services.prometheus, "prometheus")
        body, content_type = exposition.render(ctx.headers.get("Accept"))
        return Reply(body, 200, {"Content-Type": content_type, "Cache-Control": "no-store"})

    def _item(self, sample: Sample, grants_of: dict[str, dict]) -> dict[str, Any]:
        d = self._metrics.definitions[sample.name]
        uid = sample.labels.get("uid") if d.scope == "user" else None
        labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
        item = {"id": f"{sample.name}:{labels}" if labels else sample.name,
                "name": d.name, "scope": d.scope, "style": d.style, "period": d.period,
                "uid": uid, "labels": sample.labels, "value": sample.value,
                "limit": None, "remaining": None,
                "expires": None if sample.expires is None else iso_utc(sample.expires),
                "description": d.description}
        if d.style == "grant" and uid:
            if uid not in grants_of:
                grants_of[uid] = self._grants.for_uid(uid)
            limit = grants_of[uid].get(d.name)
            if limit is not None:
                item["limit"] = limit
                item["remaining"] = max(limit - sample.value, 0)
        return item

    def _samples(self, ctx: RequestContext, filters: dict[str, Any]) -> list:
        metrics = self._metrics
        metrics.flush()  # include what this process counted a moment ago
        principal = ctx.principal
        if principal.uid is None:
            return []  # an x-public metric.find: an anonymous caller has no metrics
        if not principal.is_admin:
            return metrics.for_user(principal.uid)
        uids = filters.get("uid")
        if isinstance(uids, str) and uids != "*" and "%" not in uids:
            uids = [uids]
        if isinstance(uids, list) and uids and all(isinstance(u, str) and u != "*" and
                                                   "%" not in u for u in uids):
            if len(uids) > MAX_UIDS:
                raise BadRequest(N_("filter: at most %(count)s uids", count=MAX_UIDS),
                                 errors={"filter": N_("at most %(count)s uids", count=MAX_UIDS)})
            return [s for u in dict.fromkeys(uids) for s in metrics.for_user(u)]
        return metrics.scan()

    def find(self, ctx: RequestContext) -> Reply:
        settings = self.services.settings
        params = ctx.params
        filters = q.parse_filter(params.get("filter"))
        sort = q.parse_sort(params.get("sort") or "name", dict.fromkeys(FIELDS), max_keys=1)
        limit = params.get("limit")
        offset = params.get("offset") or 0
        if params.get("cursor_next"):
            state = paging.resume(self.services.cursor_signer, params["cursor_next"],
                                  "metric", offset)
            filters, sort = state["f"], q.parse_sort(state["s"], dict.fromkeys(FIELDS))
            offset, limit = int(state["k"]), limit or state.get("l")
        limit = paging.page_size(limit, settings)
        for name in filters:
            if name not in FIELDS:
                raise BadRequest(N_("filter: unknown field %(name)s", name=repr(name[:64])),
                                 errors={"filter": N_("unknown field %(name)s",
                                                      name=repr(name[:64]))})
        grants_of: dict[str, dict] = {}
        items = [self._item(s, grants_of) for s in self._samples(ctx, filters)
                 if s.name in self._metrics.definitions]
        items = [i for i in items if all(_matches(i.get(k), v) for k, v in filters.items())]
        items.sort(key=lambda i: i["id"])
        items.sort(key=lambda i: _sort_key(i, sort.field), reverse=sort.descending)
        if sort.descending:  # nulls last either way, ties by id ascending
            items.sort(key=lambda i: i.get(sort.field) is None)
        page = items[offset:offset + limit]
        body: dict[str, Any] = {"items": page, "count": len(items)}
        if offset + limit < len(items):
            body["cursor_next"] = paging.next_cursor(self.services.cursor_signer, "metric",
                                                     sort, filters, offset + limit, "", limit)
        return Reply(body, 200, {"X-Total-Count": str(len(items))})


def _timestamp(value: Any, field: str) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return naive_utc(str(value))
    except ValueError:
        raise ValidationProblem({field: N_("is not a date-time")}) from None
    except OverflowError:
        raise ValidationProblem({field: N_("is out of range")}) from None


class GrantController(BasicCRUD):
    """Per-user grant overrides: known names, numeric values; caches dropped on change."""

    def _normalize(self, values: dict[str, Any]) -> dict[str, Any]:
        grants = required(self.services.grants, "grants")
        if "name" in values and values["name"] not in grants.defaults:
            known = ", ".join(sorted(grants.defaults))
            english = f"no such grant (known: {known})"[:200]
            raise ValidationProblem({"name": N_as(english, "no such grant (known: %(names)s)",
                                                  names=known)})
        if "value" in values:
            n = number(values["value"])
            if n is None:
                raise ValidationProblem({"value": NUMBER_RULE})
            values["value"] = str(n)
        if "expires" in values:
            values["expires"] = _timestamp(values["expires"], "expires")
        return values

    def _changed(self, ctx: RequestContext, *uids: str | None) -> None:
        required(self.services.grants, "grants").cache.drop_around_commit(ctx, *uids)

    def before_create(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        data = self._normalize(data)
        self._changed(ctx, data.get("uid"))
        return data

    def before_update(self, ctx: RequestContext, record: Any,
                      changes: dict[str, Any]) -> dict[str, Any]:
        changes = self._normalize(changes)
        self._changed(ctx, record.uid, changes.get("uid"))
        return changes

    def before_delete(self, ctx: RequestContext, record: Any) -> None:
        self._changed(ctx, record.uid)
