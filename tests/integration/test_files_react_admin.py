"""Files through the react-admin base (``/api/v1/ra``), as react-admin's FileInput /
ImageInput recipes send them: multipart FormData (the fields, then ``rawFile``), or JSON
with the file read as a base64 data URL. Every refusal is a problem naming the field,
and leaves nothing stored."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from pathlib import Path

import pytest
import requests

from helpers import assert_problem, make_user, serve_app
from test_files import HTML, PNG, grant

ORIGIN = "http://admin.example.test"
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def ra(settings, server, tmp_path_factory):
    s = settings.replace(file_max_bytes=LIMIT, cors_origins=[ORIGIN],
                         file_dir=str(tmp_path_factory.mktemp("ra")))
    with serve_app(s) as srv:
        yield srv


class Provider:
    """What a data provider's ``create('file', ...)`` sends, through fetchJson."""

    def __init__(self, srv, token: str) -> None:
        self.root = srv.url.removesuffix(srv.settings.base_url) + "/api/v1/ra"
        self.headers = {"Accept": "application/json", "Authorization": f"Bearer {token}",
                        "Origin": ORIGIN}

    def form(self, data: bytes, title: str, **fields) -> requests.Response:
        # FormData: the record's fields, then the file (rawFile under the field's name)
        return requests.post(self.root + "/file", headers=self.headers, timeout=30,
                             data={k: str(v) for k, v in fields.items()},
                             files={"content": (title, data, "image/png")})

    def json(self, body) -> requests.Response:
        raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return requests.post(self.root + "/file", data=raw, timeout=30,
                             headers={**self.headers, "Content-Type": "application/json"})


def data_url(data: bytes, ctype: str = "image/png") -> str:
    return f"data:{ctype};base64," + base64.b64encode(data).decode()


def stored(srv) -> list[Path]:
    return sorted(p for p in Path(srv.settings.file_dir).rglob("*") if p.is_file())


def test_multipart_form_data_answers_in_react_admin_shape(ra, server):
    owner = make_user(server)
    api = Provider(ra, owner.token)
    resp = api.form(PNG, "dot.png", privacy="secret")
    assert resp.status_code == 201, resp.text
    made = resp.json()
    assert made["id"] and made["name"] == "dot.png" and made["privacy"] == "secret"
    assert made["content_type"] == "image/png" and made["uid"] == owner.uid
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    # getList and getOne: bare array with Content-Range, and the record itself
    listed = requests.get(api.root + "/file", headers=api.headers, timeout=30,
                          params={"range": "[0,9]", "sort": '["id","ASC"]'})
    assert [f["id"] for f in listed.json()] == [made["id"]]
    assert listed.headers["Content-Range"] == "file 0-0/1"
    got = requests.get(api.root + f"/file/{made['id']}/content", headers=api.headers,
                       timeout=30)
    assert got.content == PNG and got.headers["Content-Disposition"].startswith("attachment")


def test_json_data_url_is_decoded_sniffed_and_stored(ra, server):
    owner = make_user(server)
    api = Provider(ra, owner.token)
    # what the recipe sends: FileInput's value with src replaced by a data URL; rawFile
    # is a File, which JSON.stringify writes as {}
    resp = api.json({"content": {"rawFile": {}, "src": data_url(PNG, "text/html"),
                                 "title": "../../pic.png"}, "privacy": "member"})
    assert resp.status_code == 201, resp.text
    made = resp.json()
    assert made["name"] == "pic.png" and made["size"] == len(PNG)
    assert made["content_type"] == "image/png"  # the data URL's type is a claim only
    assert made["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert made["privacy"] == "member" and made["uid"] == owner.uid
    got = requests.get(api.root + f"/file/{made['id']}/content", headers=api.headers,
                       timeout=30)
    assert got.content == PNG
    # a name given beside the file wins over the title
    named = api.json({"content": {"src": data_url(b"hello\n", "text/plain"),
                                  "title": "a.txt"}, "name": "notes.txt"}).json()
    assert named["name"] == "notes.txt" and named["content_type"] == "text/plain"


@pytest.mark.parametrize("body,status,field", [
    ({"content": {"src": data_url(b"a" * (LIMIT + 1), "text/plain"), "title": "big.txt"}},
     413, "content"),
    ({"content": {"src": data_url(HTML, "image/png"), "title": "cat.png"}}, 415, "content"),
    ({"content": {"src": "blob:http://admin.example.test/1234", "title": "x.png"}},
     400, "content"),
    ({"content": {"src": "https://evil.example/x.png", "title": "x.png"}}, 400, "content"),
    ({"content": {"src": "data:image/png,%89PNG", "title": "x.png"}}, 400, "content"),
    ({"content": {"src": "data:image/png;base64,iVBO!!==", "title": "x.png"}}, 400,
     "content"),
    ({"content": {"src": "data:image/png;base64,iVB", "title": "x.png"}}, 400, "content"),
    ({"content": {"src": "data:image/png;base64," + "A" * 400 + "*AAA" + "A" * 4000,
                  "title": "x.png"}}, 400, "content"),
    ({"content": {"title": "x.png"}}, 400, "content"),
    ({"content": {"src": data_url(PNG), "title": 7}}, 400, "content.title"),
    ({"content": [{"src": data_url(PNG)}]}, 400, "content"),
    ({"content": 12}, 400, "content"),
    ({"name": "nothing.png"}, 400, "content"),
    ({"content": {"src": data_url(PNG)}, "size": 1}, 400, "size"),
    ({"content": {"src": data_url(PNG)}, "privacy": "everyone"}, 400, "privacy"),
    ([{"content": {"src": data_url(PNG)}}], 400, "body"),
    ('{"content": {"src": "data:', 400, "body"),
])
def test_json_refusals_name_the_field_and_store_nothing(ra, server, body, status, field):
    api = Provider(ra, make_user(server).token)
    before = stored(ra)
    assert_problem(api.json(body), status, field)
    assert stored(ra) == before


def test_json_body_past_the_base64_of_the_limit_is_413_before_decoding(ra, server):
    api = Provider(ra, make_user(server).token)
    huge = json.dumps({"content": {"src": data_url(b"\0" * (LIMIT * 2)), "title": "z"}})
    assert_problem(api.json(huge), 413)


def test_grants_and_privacy_hold_for_data_urls(ra, server, admin):
    owner, stranger = make_user(server), make_user(server)
    grant(server, admin, owner.uid, "storage_bytes", 100)
    api = Provider(ra, owner.token)
    before = stored(ra)
    body = assert_problem(api.json({"content": {"src": data_url(b"x" * 101, "text/plain"),
                                                "title": "a.txt"}}), 403)
    assert body["grant"] == "storage_bytes"
    assert stored(ra) == before
    # nor can a stranger upload into someone else's name or list
    other = Provider(ra, stranger.token)
    assert_problem(other.json({"content": {"src": data_url(PNG)}, "uid": owner.uid}), 404,
                   "uid")
    assert_problem(other.json({"content": {"src": data_url(PNG)},
                               "list_id": "x-" + secrets.token_hex(8)}), 404, "list_id")
    assert stored(ra) == before


def test_the_envelope_api_still_takes_only_multipart(ra, server):
    client_headers = {"Authorization": f"Bearer {make_user(server).token}",
                      "Content-Type": "application/json"}
    resp = requests.post(ra.url + "/file", headers=client_headers, timeout=30,
                         data=json.dumps({"content": {"src": data_url(PNG)}}))
    assert_problem(resp, 415)
