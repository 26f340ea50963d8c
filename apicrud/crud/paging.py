"""Paging parameters, read one way by every list: ``limit``, ``offset``, ``cursor_next``
and comma-separated id lists.

:func:`page_size` checks ``limit`` against the settings, :func:`resume` opens a
``cursor_next`` token for the list that made it (and refuses it with ``offset``),
:func:`next_cursor` makes the token for the page after, :func:`id_list` reads
``id=a,b,c``. The tokens themselves (signed, with key rotation) and the keyset clause
are :mod:`apicrud.db.query`'s; what a page holds is the list's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apicrud.db import query as q
from apicrud.errors import BadRequest
from apicrud.i18n import N_


def page_size(requested: int | None, settings: Any, default: int | None = None) -> int:
    """``limit`` as asked, else ``default`` (setting ``per_page_default`` unless given);
    400 unless it is 1 to setting ``per_page_max``."""
    most = settings.per_page_max
    limit = requested or (default if default is not None else settings.per_page_default)
    if not 1 <= limit <= most:
        raise BadRequest(N_("limit: must be 1 to %(most)s", most=most),
                         errors={"limit": N_("must be 1 to %(most)s", most=most)})
    return limit


def resume(signer: Any, token: str, resource: str, offset: int = 0,
           same_query: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """The state a ``cursor_next`` token carries (``r`` resource, ``s`` sort, ``f``
    filter, ``k`` last key, ``i`` last id, ``l`` page size, more as the list put in).

    400 when it is forged or expired, made by another list than ``resource``, made for
    another query (``same_query(state)`` false: the filter or sort differ), or given
    with an ``offset``."""
    state = q.decode_cursor(signer, token)
    if state.get("r") != resource:
        raise BadRequest(N_("cursor_next: belongs to another resource"),
                         errors={"cursor_next": N_("belongs to another resource")})
    if same_query is not None and not same_query(state):
        raise BadRequest(N_("cursor_next: filter or sort differ from the first page"),
                         errors={"cursor_next": N_("filter or sort differ")})
    if offset:
        raise BadRequest(N_("offset: cannot be combined with cursor_next"),
                         errors={"offset": N_("cannot be combined with cursor_next")})
    return state


def next_cursor(signer: Any, resource: str, sort: q.Sort, filters: dict[str, Any],
                key: Any, last_id: str, limit: int, **more: Any) -> str:
    """The token :func:`resume` reads back for the page after this one."""
    return q.encode_cursor(signer, {"r": resource, "s": sort.text(), "f": filters,
                                    "k": key, "i": last_id, "l": limit, **more})


def id_list(raw: Any, most: int, field: str = "id") -> list[str]:
    """``a,b,c`` as distinct ids in the order given; 400 (naming ``field``) unless
    there are 1 to ``most`` of them."""
    ids = list(dict.fromkeys(i for i in str(raw).split(",") if i))
    if not ids or len(ids) > most:
        raise BadRequest(N_("%(field)s: give 1 to %(limit)s comma-separated ids",
                            field=field, limit=most),
                         errors={field: N_("give 1 to %(limit)s comma-separated ids",
                                           limit=most)})
    return ids
