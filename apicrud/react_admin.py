"""react-admin's wire dialects, served under setting ``react_admin_url`` (``/api/v1/ra``).

Point a stock data provider at that URL, unchanged::

    simpleRestProvider("https://host/api/v1/ra")   // ra-data-simple-rest
    jsonServerProvider("https://host/api/v1/ra")   // ra-data-json-server

Lists answer with a bare JSON array plus ``Content-Range: <resource> <first>-<last>/<total>``
and ``X-Total-Count`` (and ``X-Cursor-Next`` when there is a next page: send it back as
``cursor_next`` for keyset paging). json-server's ``_page``/``_limit`` pages are read as
``_start``/``_end`` are. Both providers' query parameters are translated here into the
canonical ones (``filter``, ``sort``, ``limit``, ``offset``), which are then validated by
the spec exactly as for ``/api/v1``; every other operation is the same as there. The
envelope API at ``/api/v1`` is untouched: a separate base path keeps the two
unambiguous (simple-rest's getMany is a bare ``filter`` query that an envelope client may
send too).
"""

from __future__ import annotations

import json
import re
from typing import Any

from werkzeug.datastructures import Headers, MultiDict

from apicrud.context import Reply
from apicrud.errors import BadRequest
from apicrud.i18n import N_

_RANGE_HEADER = re.compile(r"^\s*[a-z_][a-z0-9_]*=(\d{1,12})-(\d{1,12})\s*$")
_JSON_SERVER = ("_sort", "_order", "_start", "_end", "_limit", "_page", "q")


def _json_param(args: MultiDict[str, str], name: str) -> Any:
    try:
        return json.loads(args[name])
    except (ValueError, RecursionError):
        raise BadRequest(N_("%(field)s: not valid JSON", field=name),
                         errors={name: N_("not valid JSON")}) from None


def _int(value: Any, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadRequest(N_("%(field)s: not an integer", field=name),
                         errors={name: N_("not an integer")}) from None
    if not 0 <= number <= 1_000_000_000:
        raise BadRequest(N_("%(field)s: out of range", field=name),
                         errors={name: N_("out of range")})
    return number


def _page(start: int, end_inclusive: int, name: str) -> dict[str, str]:
    if end_inclusive < start:
        raise BadRequest(N_("%(field)s: end before start", field=name),
                         errors={name: N_("end before start")})
    return {"offset": str(start), "limit": str(end_inclusive - start + 1)}


def _typed(value: str, column: Any) -> Any:
    """json-server sends every value as text: give numbers and booleans their type."""
    from apicrud.db.query import column_kind

    kind = column_kind(column) if column is not None else "string"
    if kind == "integer" and re.fullmatch(r"-?\d{1,18}", value):
        return int(value)
    if kind == "number" and re.fullmatch(r"-?\d+(\.\d+)?", value):
        return float(value)
    if kind == "boolean" and value in ("true", "false"):
        return value == "true"
    return value


def translate_query(args: MultiDict, headers: Headers, fields: dict[str, Any]) -> MultiDict:
    """Turn simple-rest or json-server list parameters into canonical ones."""
    out: dict[str, str] = {}
    filters: dict[str, Any] = {}
    if "filter" in args:
        filters = _json_param(args, "filter")
        if not isinstance(filters, dict):
            raise BadRequest(N_("filter: must be a JSON object"),
                             errors={"filter": N_("must be a JSON object")})
    if "sort" in args:  # simple-rest: ["field","ASC"]
        raw = args["sort"]
        sort = _json_param(args, "sort") if raw.startswith("[") else raw
        if isinstance(sort, list) and len(sort) == 2 and all(isinstance(x, str) for x in sort):
            out["sort"] = f"{sort[0]}:{sort[1].lower()}"
        elif isinstance(sort, str):
            out["sort"] = sort
        else:
            raise BadRequest(N_('sort: expected ["field","ASC|DESC"]'),
                             errors={"sort": N_("bad sort")})
    if "range" in args:  # simple-rest: [0,24], inclusive
        rng = _json_param(args, "range")
        if not (isinstance(rng, list) and len(rng) == 2):
            raise BadRequest(N_("range: expected [first,last]"), errors={"range": N_("bad range")})
        out.update(_page(_int(rng[0], "range"), _int(rng[1], "range"), "range"))
    elif headers.get("Range") and "_start" not in args:
        match = _RANGE_HEADER.match(headers["Range"])
        if not match:
            raise BadRequest(N_("Range: expected <resource>=<first>-<last>"),
                             errors={"Range": N_("bad range")})
        out.update(_page(int(match.group(1)), int(match.group(2)), "Range"))
    if "_sort" in args:  # json-server
        order = args.get("_order", "ASC").split(",")[0].lower()
        out["sort"] = f"{args['_sort'].split(',')[0]}:{order}"
    if "_start" in args or "_end" in args:  # json-server: _end exclusive
        start = _int(args.get("_start", 0), "_start")
        end = _int(args.get("_end", start + 25), "_end")
        out.update(_page(start, end - 1, "_end"))
    elif "_page" in args or "_limit" in args:  # json-server's pages: _page from 1
        size = _int(args.get("_limit", 10), "_limit")
        page = _int(args.get("_page", 1), "_page")
        if size < 1 or page < 1:
            name = "_limit" if size < 1 else "_page"
            raise BadRequest(N_("%(field)s: must be at least 1", field=name),
                             errors={name: N_("must be at least 1")})
        out.update(_page((page - 1) * size, page * size - 1, "_page"))
    if "q" in args:
        filters["q"] = args["q"]
    for key in set(args.keys()) - {"filter", "sort", "range", "limit", "offset",
                                   "cursor_next", "count", "fields", "embed",
                                   *_JSON_SERVER}:
        values = [_typed(v, fields.get(key.rsplit("_", 1)[0] if key not in fields else key))
                  for v in args.getlist(key)]
        filters[key] = values if len(values) > 1 or key == "id" else values[0]
    for key in ("limit", "offset", "cursor_next", "count", "fields", "embed"):
        if key in args:
            out[key] = args[key]
    if filters:
        out["filter"] = json.dumps(filters)
    return MultiDict(out)


def shape_reply(reply: Reply, resource: str, offset: int) -> Reply:
    """An envelope ``{items, count}`` becomes a bare array with the count headers."""
    body = reply.body
    if not (isinstance(body, dict) and "items" in body):
        return reply
    items, count = body["items"], body.get("count")
    span = f"{offset}-{offset + len(items) - 1}" if items else "*"
    # count=none: the total is unknown ("*", RFC 9110's unsatisfied-range form)
    headers = {**reply.headers,
               "Content-Range": f"{resource} {span}/{'*' if count is None else count}"}
    if count is not None:
        headers["X-Total-Count"] = str(count)
    if body.get("cursor_next"):  # the bare array has no room for it: a header carries it
        headers["X-Cursor-Next"] = body["cursor_next"]
    return Reply(items, reply.status, headers, reply.cookies)
