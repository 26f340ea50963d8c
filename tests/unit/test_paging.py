"""apicrud.crud.paging: limit, cursor and id-list parameters, read one way by every list."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import zlib
from types import SimpleNamespace

import pytest
from itsdangerous import URLSafeSerializer

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
    for bad in (token[:-2] + "xx", "not-a-token", token[:-1], token[1:], token + "A",
                token[:20], "", "." + token, token + "." + token):
        with pytest.raises(BadRequest) as exc:
            paging.resume(q.cursor_signer("k1"), bad, "list")
        assert exc.value.errors == {"cursor_next": "invalid cursor"}
    with pytest.raises(BadRequest):  # signed with a key the server never had
        paging.resume(q.cursor_signer("k2"), token, "list")


def test_resume_accepts_a_token_of_a_rotated_key():
    old = paging.next_cursor(q.cursor_signer("k1"), "list", q.Sort(), {}, [], "x-1", 10)
    assert paging.resume(q.cursor_signer("k2", ["k1"]), old, "list")["i"] == "x-1"


# -- the token itself, from a forger's side ------------------------------------------
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
STATE = {"r": "list", "s": "name:desc", "f": {"uid": "x-a"}, "k": ["zed"], "i": "x-9",
         "l": 5}


def test_no_changed_character_makes_another_state():
    """Change any one character of a token to any other: it is refused, or (the last
    character's bits that base64 ignores) it is the same token's state."""
    signer = q.cursor_signer("k1")
    token = signer.dumps(STATE)
    accepted = 0
    for at in range(len(token)):
        for char in ALPHABET.replace(token[at], "")[::7]:
            forged = token[:at] + char + token[at + 1:]
            try:
                state = q.decode_cursor(signer, forged)
            except BadRequest:
                continue
            accepted += 1
            assert at == len(token) - 1 and state == STATE
    assert accepted <= len(ALPHABET)


def test_a_state_rewritten_under_the_old_tag_is_refused():
    signer = q.cursor_signer("k1")
    sealed = base64.urlsafe_b64decode(signer.dumps(STATE) + "==")
    tag, body = sealed[:16], sealed[16:]
    wider = json.dumps({**STATE, "f": {}}, separators=(",", ":")).encode()
    for forged in (tag + body[:1] + wider, tag + b"\x01" + zlib.compress(body[1:]),
                   tag + body + b" ", tag[:15] + body):
        token = base64.urlsafe_b64encode(forged).decode().rstrip("=")
        with pytest.raises(BadRequest):
            q.decode_cursor(signer, token)


def test_a_tag_made_with_the_bare_secret_is_refused():
    """Keys are derived for cursors alone: knowing how some other feature MACs with
    ``secret_key`` (HMAC-SHA256, BLAKE2b keyed with it) forges nothing here."""
    signer = q.cursor_signer("k1")
    body = b"\x00" + json.dumps(STATE).encode()
    for tag in (hmac.digest(b"k1", body, "sha256")[:16],
                hashlib.blake2b(body, key=b"k1", digest_size=16).digest(),
                hashlib.blake2b(body, digest_size=16).digest()):
        token = base64.urlsafe_b64encode(tag + body).decode().rstrip("=")
        with pytest.raises(BadRequest):
            q.decode_cursor(signer, token)


def test_signer_sealed_oddities_are_refused():
    """Even with a valid tag (made here with the signer's own key): an unknown flag, a
    state that inflates past the bound, a cut stream, JSON that is not a state."""
    signer = q.cursor_signer("k1")

    def sealed(body: bytes) -> str:
        tag = signer._tag(signer._keys[0], body)
        return base64.urlsafe_b64encode(tag + body).decode().rstrip("=")

    bomb = zlib.compress(b'{"r":"list","s":"","f":{},"i":"x","k":[' +
                         b"0," * (q.CursorSigner.MAX_STATE // 2 + 10) + b"0]}")
    good = zlib.compress(json.dumps(STATE).encode())
    assert len(bomb) < 4096  # it fits the parameter's maxLength
    for body in (b"\x02" + json.dumps(STATE).encode(), b"\x01" + bomb,
                 b"\x01" + good[:-3], b"\x01not zlib", b"\x00[1, 2]", b"\x00{",
                 b"\x00\xff\xfe", b"\x00" + b"[" * 100_000 + b"]" * 100_000):
        with pytest.raises(BadRequest):
            q.decode_cursor(signer, sealed(body))
    assert q.decode_cursor(signer, sealed(b"\x01" + good)) == STATE


def test_a_long_state_is_compressed_and_reads_back():
    signer = q.cursor_signer("k1")
    state = {**STATE, "k": ["word " * 51]}  # a text sort key, up to SORT_PREFIX long
    token = signer.dumps(state)
    plain = len(json.dumps(state, separators=(",", ":"))) * 4 / 3
    assert len(token) < plain / 2
    assert q.decode_cursor(signer, token) == state
    short = signer.dumps(STATE)  # short states are not worth zlib's setup
    assert base64.urlsafe_b64decode(short + "==")[16:17] == b"\x00"


def test_a_token_of_the_earlier_release_still_reads_back():
    """Cursors were itsdangerous tokens before: during a rolling upgrade a client may
    bring one from a server not yet upgraded."""
    old = URLSafeSerializer(["k1"], salt="apicrud cursor",
                            serializer_kwargs={"default": str, "ensure_ascii": False})
    for state in (STATE, {**STATE, "k": ["word " * 51]}):  # compressed, in its way
        assert paging.resume(q.cursor_signer("k1"), old.dumps(state), "list") == state
        assert paging.resume(q.cursor_signer("k2", ["k1"]), old.dumps(state),
                             "list") == state
    token = old.dumps(STATE)
    for bad in (token[:-2] + "xx", token.replace(".", "..", 1)):
        with pytest.raises(BadRequest):
            paging.resume(q.cursor_signer("k1"), bad, "list")
    with pytest.raises(BadRequest):
        paging.resume(q.cursor_signer("k2"), token, "list")
    other = URLSafeSerializer(["k1"], salt="another use")
    with pytest.raises(BadRequest):
        paging.resume(q.cursor_signer("k1"), other.dumps(STATE), "list")


def test_a_token_of_a_retired_key_is_refused():
    token = q.cursor_signer("k1").dumps(STATE)
    assert q.decode_cursor(q.cursor_signer("k3", ["k2", "k1"]), token) == STATE
    with pytest.raises(BadRequest):
        q.decode_cursor(q.cursor_signer("k3", ["k2"]), token)
