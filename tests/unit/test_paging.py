"""apicrud.crud.paging: limit, cursor and id-list parameters, read one way by every list."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from apicrud.crud import paging
from apicrud.db import query as q
from apicrud.errors import BadRequest

SETTINGS = SimpleNamespace(per_page_default=20, per_page_max=100)


@pytest.mark.parametrize("asked,default,expected", [
    (None, None, 20), (0, None, 20), (1, None, 1), (100, None, 100), (None, 100, 100),
    (7, 100, 7),
])
def test_page_size_takes_the_limit_asked_else_the_default(asked, default, expected):
    assert paging.page_size(asked, SETTINGS, default=default) == expected


@pytest.mark.parametrize("asked", [101, -1, 10 ** 9])
def test_page_size_out_of_range_is_a_400_naming_limit(asked):
    with pytest.raises(BadRequest) as exc:
        paging.page_size(asked, SETTINGS)
    assert list(exc.value.errors) == ["limit"]
    assert str(exc.value.detail) == "limit: must be 1 to 100"


def test_page_size_checks_a_default_too():
    with pytest.raises(BadRequest):
        paging.page_size(None, SETTINGS, default=101)


def test_id_list_keeps_order_and_drops_repeats_and_empty_parts():
    assert paging.id_list("b,a,,b,c,", 3) == ["b", "a", "c"]
    assert paging.id_list("x-1", 1) == ["x-1"]


@pytest.mark.parametrize("raw", ["", ",", ",,,", "a,b,c,d"])
def test_id_list_refuses_none_or_too_many(raw):
    with pytest.raises(BadRequest) as exc:
        paging.id_list(raw, 3, field="ids")
    assert exc.value.errors == {"ids": "give 1 to 3 comma-separated ids"}


def test_id_list_counts_distinct_ids():
    assert paging.id_list("a,a,a,a,b", 2) == ["a", "b"]


def test_next_cursor_is_what_resume_reads_back():
    signer = q.cursor_signer("k1")
    sort = q.Sort((("name", True),))
    token = paging.next_cursor(signer, "list", sort, {"uid": "x-a"}, ["zed"], "x-9", 5,
                               c="exact")
    state = paging.resume(signer, token, "list")
    assert state == {"r": "list", "s": "name:desc", "f": {"uid": "x-a"}, "k": ["zed"],
                     "i": "x-9", "l": 5, "c": "exact"}


def test_resume_refuses_another_lists_cursor():
    signer = q.cursor_signer("k1")
    token = paging.next_cursor(signer, "metric", q.Sort(), {}, 10, "", 10)
    with pytest.raises(BadRequest) as exc:
        paging.resume(signer, token, "list")
    assert exc.value.errors == {"cursor_next": "belongs to another resource"}


def test_resume_refuses_a_cursor_of_another_query_before_an_offset():
    signer = q.cursor_signer("k1")
    token = paging.next_cursor(signer, "list", q.Sort(), {}, [], "x-1", 10)
    with pytest.raises(BadRequest) as exc:
        paging.resume(signer, token, "list", offset=5, same_query=lambda s: False)
    assert exc.value.errors == {"cursor_next": "filter or sort differ"}
    with pytest.raises(BadRequest) as exc:
        paging.resume(signer, token, "list", offset=5, same_query=lambda s: True)
    assert exc.value.errors == {"offset": "cannot be combined with cursor_next"}


def test_resume_refuses_forged_and_foreign_tokens():
    token = paging.next_cursor(q.cursor_signer("k1"), "list", q.Sort(), {}, [], "x-1", 10)
    for bad in (token[:-2] + "xx", "not-a-token", token.replace(".", "", 1)):
        with pytest.raises(BadRequest) as exc:
            paging.resume(q.cursor_signer("k1"), bad, "list")
        assert exc.value.errors == {"cursor_next": "invalid cursor"}
    with pytest.raises(BadRequest):  # signed with a key the server never had
        paging.resume(q.cursor_signer("k2"), token, "list")


def test_resume_accepts_a_token_of_a_rotated_key():
    old = paging.next_cursor(q.cursor_signer("k1"), "list", q.Sort(), {}, [], "x-1", 10)
    assert paging.resume(q.cursor_signer("k2", ["k1"]), old, "list")["i"] == "x-1"
