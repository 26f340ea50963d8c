"""Files over HTTP on local storage: uploads, downloads, signed URLs, direct uploads, and
every refusal an attacker tries (too large, wrong or disguised type, over the grant,
someone else's file, a trashed file, path tricks in names, forged or swapped uploads)."""

from __future__ import annotations

import hashlib
import http.client
import os
import secrets
import time
import tracemalloc
from pathlib import Path

import pytest
import requests

from helpers import Api, make_user, serve_app

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00"
       b"\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05"
       b"\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")
HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
SVG = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">'
       b"<script>alert(2)</script></svg>")
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def small(settings, server, tmp_path_factory):
    """An instance with a 64 KiB upload limit and the default type list."""
    s = settings.replace(file_max_bytes=LIMIT, file_dir=str(tmp_path_factory.mktemp("s")))
    with serve_app(s) as srv:
        yield srv


@pytest.fixture(scope="module")
def anything(settings, server, tmp_path_factory):
    """An instance that accepts every type (to see how dangerous ones are served) and
    files up to 300 MB."""
    s = settings.replace(file_max_bytes=300 * 1024 * 1024, file_types=["*/*"],
                         file_dir=str(tmp_path_factory.mktemp("a")))
    with serve_app(s) as srv:
        yield srv


def api(srv, user) -> Api:
    return Api(srv.url, user.token)


def stored(srv) -> list[Path]:
    """Every object the instance's local storage holds (temporary files included)."""
    root = Path(srv.settings.file_dir)
    return sorted(p for p in root.rglob("*") if p.is_file())


def upload(client: Api, data: bytes, name: str = "pic.png", ctype: str = "image/png",
           **fields):
    return client.post("/file", data={k: str(v) for k, v in fields.items()},
                       files={"content": (name, data, ctype)})


def problem(resp, status: int) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.text[:300])
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    return resp.json()


def test_upload_then_download_streams_the_same_bytes_as_an_attachment(small, server):
    owner = make_user(server)
    client = api(small, owner)
    resp = upload(client, PNG, name="dot.png", ctype="text/html")  # the claim is ignored
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["name"] == "dot.png" and body["size"] == len(PNG)
    assert body["content_type"] == "image/png"
    assert body["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert body["uid"] == owner.uid and body["state"] == "ready" and "storage_key" not in body
    assert body["content"].endswith(f"/file/{body['id']}/content")
    got = client.get(f"/file/{body['id']}/content")
    assert got.status_code == 200 and got.content == PNG
    assert got.headers["Content-Type"] == "image/png"
    assert got.headers["Content-Disposition"].startswith("attachment;")
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    # the record is an ordinary one: find, update, rbac
    found = client.get("/file", params={"filter": '{"name": "dot.png"}'}).json()
    assert [f["id"] for f in found["items"]] == [body["id"]]
    renamed = client.patch(f"/file/{body['id']}", json={"name": "../../x/renamed.png"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "renamed.png"
    assert problem(client.patch(f"/file/{body['id']}", json={"size": 1}), 400)["errors"] \
        == {"size": "is read-only"}


def test_too_large_is_413_and_nothing_is_stored(small, server):
    client = api(small, make_user(server))
    before = stored(small)
    body = problem(upload(client, b"a" * (LIMIT + 1), name="big.txt", ctype="text/plain"),
                   413)
    assert body["errors"] == {"content": f"larger than {LIMIT} bytes"}
    # the same without a declared length (chunked): refused as the bytes pass the limit
    boundary = "b" + secrets.token_hex(8)

    def chunked():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; "
               f"filename=\"big.txt\"\r\nContent-Type: text/plain\r\n\r\n").encode()
        for _ in range(LIMIT // 1024 + 8):
            yield b"a" * 1024
        yield f"\r\n--{boundary}--\r\n".encode()

    resp = client.post("/file", data=chunked(),
                       headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    problem(resp, 413)
    assert stored(small) == before
    assert client.get("/file").json()["items"] == []


def test_declared_length_over_the_limit_is_refused_before_reading(small, server):
    """A body announced as 100 times the limit is refused before it is sent."""
    owner = make_user(server)
    host, port = small.url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", small.url.split(port, 1)[1] + "/file")
    conn.putheader("Authorization", f"Bearer {owner.token}")
    conn.putheader("Content-Type", "multipart/form-data; boundary=zz")
    conn.putheader("Content-Length", str(LIMIT * 100))
    conn.endheaders()
    conn.send(b"--zz\r\n")
    resp = conn.getresponse()
    assert resp.status == 413
    assert resp.getheader("Content-Type").startswith("application/problem+json")
    conn.close()


@pytest.mark.parametrize("data,name,ctype", [
    (HTML, "cat.png", "image/png"),  # HTML dressed as a picture
    (SVG, "logo.svg", "image/svg+xml"),  # script in an SVG
    (b"\x7fELF\x02\x01\x01" + b"\x00" * 64, "run.pdf", "application/pdf"),
    (b"PK\x03\x04" + b"\x00" * 64, "doc.txt", "text/plain"),
])
def test_types_outside_the_allow_list_are_415_whatever_the_name_says(small, server, data,
                                                                      name, ctype):
    client = api(small, make_user(server))
    before = stored(small)
    body = problem(upload(client, data, name=name, ctype=ctype), 415)
    assert "content" in body["errors"]
    assert stored(small) == before


@pytest.mark.parametrize("data", [HTML, SVG])
def test_markup_allowed_by_settings_is_served_inert(anything, server, data):
    client = api(anything, make_user(server))
    made = upload(client, data, name="page.html", ctype="text/html")
    assert made.status_code == 201, made.text
    assert made.json()["content_type"] in ("text/html", "image/svg+xml")
    got = client.get(f"/file/{made.json()['id']}/content")
    assert got.status_code == 200 and got.content == data
    assert got.headers["Content-Type"] == "application/octet-stream"
    assert got.headers["Content-Disposition"].startswith("attachment;")
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in got.headers["Content-Security-Policy"]
    link = client.get(f"/file/{made.json()['id']}/url").json()["url"]
    signed = requests.get(anything.url.rsplit("/api/", 1)[0] + link, timeout=30)
    assert signed.status_code == 200
    assert signed.headers["Content-Type"] == "application/octet-stream"
    assert signed.headers["Content-Disposition"].startswith("attachment;")


def grant(server, admin, uid, name, value):
    resp = admin.api.post("/grant", json={"uid": uid, "name": name, "value": value})
    assert resp.status_code == 201, resp.text


def test_storage_grant_refuses_before_storing(small, server, admin):
    owner = make_user(server)
    client = api(small, owner)
    grant(server, admin, owner.uid, "storage_bytes", 3000)
    assert upload(client, b"a" * 2000, name="a.txt", ctype="text/plain").status_code == 201
    before = stored(small)
    body = problem(upload(client, b"b" * 2000, name="b.txt", ctype="text/plain"), 403)
    assert body["grant"] == "storage_bytes" and body["limit"] == 3000
    assert stored(small) == before


def test_files_grant_counts_records(small, server, admin):
    owner = make_user(server)
    client = api(small, owner)
    grant(server, admin, owner.uid, "files", 1)
    assert upload(client, PNG).status_code == 201
    before = stored(small)
    assert problem(upload(client, PNG), 403)["grant"] == "files"
    assert stored(small) == before


def test_another_users_file_is_404_everywhere(small, server):
    owner, thief = make_user(server), make_user(server)
    made = upload(api(small, owner), PNG).json()
    other = api(small, thief)
    for method, tail in (("GET", ""), ("GET", "/content"), ("GET", "/url"),
                         ("GET", "/thumbnail"), ("DELETE", ""), ("POST", "/confirm")):
        problem(other.request(method, f"/file/{made['id']}{tail}"), 404)
    problem(other.patch(f"/file/{made['id']}", json={"name": "mine.png"}), 404)
    assert other.get("/file").json()["items"] == []
    # nor by moving it to themselves
    problem(other.patch(f"/file/{made['id']}", json={"uid": thief.uid}), 404)


def test_list_members_read_by_privacy(small, server):
    owner, member = make_user(server), make_user(server)
    club = api(small, owner).post("/list", json={"name": "club" + secrets.token_hex(3)})
    assert club.status_code == 201
    lid = club.json()["id"]
    assert api(small, owner).post("/listmember", json={
        "list_id": lid, "uid": member.uid, "authorization": "member"}).status_code == 201
    shared = upload(api(small, owner), PNG, list_id=lid, privacy="member").json()
    secret = upload(api(small, owner), PNG, list_id=lid, privacy="secret").json()
    assert api(small, member).get(f"/file/{shared['id']}/content").content == PNG
    problem(api(small, member).get(f"/file/{secret['id']}/content"), 404)
    # a stranger cannot upload into the list
    stranger = make_user(server)
    problem(upload(api(small, stranger), PNG, list_id=lid), 404)


def test_trashed_file_is_gone_and_purge_deletes_the_object(small, server):
    owner = make_user(server)
    client = api(small, owner)
    made = upload(client, PNG).json()
    link = client.get(f"/file/{made['id']}/url").json()["url"]
    base = small.url.rsplit("/api/", 1)[0]
    assert requests.get(base + link, timeout=30).status_code == 200
    objects = stored(small)
    assert client.delete(f"/file/{made['id']}").status_code == 200
    for tail in ("", "/content", "/url"):
        problem(client.get(f"/file/{made['id']}{tail}"), 404)
    problem(requests.get(base + link, timeout=30), 403)  # an issued link dies with it
    assert stored(small) == objects  # still in the trashcan: restorable
    assert client.put(f"/trashcan/file-{made['id']}", json={"status": "active"}) \
        .status_code == 200
    assert client.get(f"/file/{made['id']}/content").content == PNG
    assert client.delete(f"/file/{made['id']}").status_code == 200
    assert client.delete(f"/trashcan/file-{made['id']}").status_code == 200
    assert len(stored(small)) == len(objects) - 1


@pytest.mark.parametrize("name", [
    "../../../etc/passwd",
    "..\\..\\windows\\win.ini",
    "C:\\Users\\me\\..\\boot.ini",
    "/abs/olute.txt",
    "..",
    ".htaccess",
    "evil%0D%0ASet-Cookie: a=b.txt",
    "nul\x00byte.txt",
    "bell\x07\x1b[31m.txt",
    "x" * 500 + ".txt",
])
def test_path_tricks_in_names_are_cut_to_a_plain_name(small, server, name):
    client = api(small, make_user(server))
    boundary = "n" + secrets.token_hex(6)
    raw = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; "
           f"filename=\"{name}\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
           f"--{boundary}--\r\n").encode("utf-8", "surrogateescape")
    made = client.post("/file", data=raw, headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert made.status_code == 201, made.text
    safe = made.json()["name"]
    assert safe and len(safe) <= 200 and not safe.startswith(".")
    assert not set(safe) & set("/\\\r\n\x00\x07\x1b\"")
    got = client.get(f"/file/{made.json()['id']}/content")
    assert got.content == b"hello"
    assert "Set-Cookie" not in got.headers
    disposition = got.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and "\r" not in disposition
    root = Path(small.settings.file_dir)
    for path in stored(small):
        rel = path.relative_to(root).parts
        assert all(set(p) <= set("0123456789abcdef") for p in rel), rel


def test_signed_url_is_refused_when_tampered(small, server):
    client = api(small, make_user(server))
    made = upload(client, PNG).json()
    link = client.get(f"/file/{made['id']}/url").json()["url"]
    base = small.url.rsplit("/api/", 1)[0]
    path, _, query = link.partition("?")
    params = dict(p.split("=", 1) for p in query.split("&"))
    bad = [
        {**params, "signature": "0" * 64},
        {**params, "expires": str(int(params["expires"]) + 1)},
        {**params, "expires": "1"},  # long past
    ]
    for q in bad:
        problem(requests.get(base + path, params=q, timeout=30), 403)
    other = upload(client, PNG).json()  # one file's signature opens no other file
    problem(requests.get(base + path.replace(made["id"], other["id"]), params=params,
                         timeout=30), 403)
    problem(requests.get(base + path.replace(made["id"], "x-nosuchfile"), params=params,
                         timeout=30), 403)


def test_malformed_chunked_framing_is_400(small, server):
    owner = make_user(server)
    host, port = small.url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", small.url.split(port, 1)[1] + "/file")
    conn.putheader("Authorization", f"Bearer {owner.token}")
    conn.putheader("Content-Type", "multipart/form-data; boundary=zz")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.send(b"--zz\r\nnot a chunk header at all\r\n\r\n")
    resp = conn.getresponse()
    assert resp.status == 400, resp.read()
    conn.close()


def test_form_rules(small, server):
    client = api(small, make_user(server))
    boundary = "bnd"
    late = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; "
            f"filename=\"a.txt\"\r\n\r\nhello\r\n--{boundary}\r\nContent-Disposition: "
            f"form-data; name=\"privacy\"\r\n\r\npublic\r\n--{boundary}--\r\n").encode()
    ctype = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    assert problem(client.post("/file", data=late, headers=ctype), 400)["errors"] == \
        {"privacy": "after the file part"}
    assert problem(client.post("/file", data={"name": "x"}, files={}), 415)
    nofile = client.post("/file", files={"name": (None, "x")})
    assert problem(nofile, 400)["errors"] == {"content": "is required (a file part)"}
    assert "privacy" in problem(upload(client, b"hi", name="a.txt", ctype="text/plain",
                                       privacy="everyone"), 400)["errors"]
    assert problem(upload(client, b"hi", name="a.txt", ctype="text/plain", colour="red"),
                   400)["errors"] == {"colour": "unknown field"}
    problem(client.post("/file", json={"name": "a.txt"}), 415)
    truncated = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; "
                 f"filename=\"a.txt\"\r\n\r\nhello").encode()
    problem(client.post("/file", data=truncated, headers=ctype), 400)
    assert client.get("/file").json()["items"] == []


def test_direct_upload_local(small, server):
    client = api(small, make_user(server))
    base = small.url.rsplit("/api/", 1)[0]
    data = PNG + b"\x00" * 100
    made = client.post("/file/direct", json={"name": "d.png", "size": len(data),
                                             "sha256": hashlib.sha256(data).hexdigest()})
    assert made.status_code == 201, made.text
    fid, up = made.json()["file"]["id"], made.json()["upload"]
    assert made.json()["file"]["state"] == "pending"
    problem(client.get(f"/file/{fid}/content"), 409)
    assert problem(client.post(f"/file/{fid}/confirm"), 409)["errors"] == \
        {"content": "not uploaded"}
    put = requests.put(base + up["url"], data=data, headers=up["headers"], timeout=30)
    assert put.status_code == 204, put.text
    done = client.post(f"/file/{fid}/confirm")
    assert done.status_code == 200 and done.json()["state"] == "ready"
    assert done.json()["content_type"] == "image/png"
    assert client.get(f"/file/{fid}/content").content == data
    problem(client.post(f"/file/{fid}/confirm"), 409)  # only once
    problem(requests.put(base + up["url"], data=data, timeout=30), 409)


def test_direct_upload_swapped_or_oversized_is_refused(small, server):
    client = api(small, make_user(server))
    base = small.url.rsplit("/api/", 1)[0]
    data = PNG + b"\x00" * 100
    made = client.post("/file/direct", json={"name": "d.png", "size": len(data),
                                             "sha256": hashlib.sha256(data).hexdigest()})
    fid, up = made.json()["file"]["id"], made.json()["upload"]
    before = stored(small)
    problem(requests.put(base + up["url"], data=data + b"more", timeout=30), 413)
    assert stored(small) == before
    swapped = PNG + b"\x01" * 100  # same size, other bytes
    assert requests.put(base + up["url"], data=swapped, timeout=30).status_code == 204
    assert "sha256" in problem(client.post(f"/file/{fid}/confirm"), 409)["detail"]
    assert stored(small) == before  # the swapped object is deleted
    problem(client.get(f"/file/{fid}/content"), 409)
    # a URL for one file does not take bytes for another
    other = client.post("/file/direct", json={"name": "e.txt", "size": 5}).json()
    problem(requests.put(base + up["url"].replace(fid, other["file"]["id"]), data=b"hello",
                         timeout=30), 403)
    # declared larger than the limit: refused up front
    problem(client.post("/file/direct", json={"name": "big", "size": LIMIT + 1}), 413)
    # wrong type, found at confirm
    html = client.post("/file/direct", json={"name": "x.png", "size": len(HTML)}).json()
    assert requests.put(base + html["upload"]["url"], data=HTML, timeout=30).status_code == 204
    problem(client.post(f"/file/{html['file']['id']}/confirm"), 415)


def test_memory_stays_flat_uploading_200_mb(anything, server):
    """The server holds a few chunks of an upload at a time, not the file."""
    client = api(anything, make_user(server))
    size = 200 * 1024 * 1024
    boundary = "m" + secrets.token_hex(8)
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; "
            f"filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    block = os.urandom(1024 * 1024)
    digest = hashlib.sha256()

    class Body:  # a streamed body of known length (requests sends it as it is made)
        def __len__(self):
            return len(head) + size + len(tail)

        def __iter__(self):
            yield head
            for _ in range(size // len(block)):
                digest.update(block)
                yield block
            yield tail

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        resp = client.post("/file", data=Body(), headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}"}, timeout=600)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert resp.status_code == 201, resp.text
    assert resp.json()["size"] == size
    assert resp.json()["sha256"] == digest.hexdigest()
    # client and server share this process: the client's 1 MiB block, a few of the
    # server's 64 KiB chunks, and the decoder's buffer; 200 MB would be 10 times this
    assert peak - base < 20 * 1024 * 1024, peak - base


def test_retention_purge_in_the_worker_deletes_the_object(small, server):
    """The worker's retention purge (no controllers there) deletes the bytes too."""
    from datetime import timedelta

    from apicrud.db.base import utcnow
    from apicrud.services import Offline
    from apicrud.trashcan import purge_expired

    client = api(small, make_user(server))
    made = upload(client, PNG).json()
    objects = stored(small)
    assert client.delete(f"/file/{made['id']}").status_code == 200
    # what the worker's retention task opens (apicrud.worker.retention), on this database
    worker_side = Offline(small.settings, small.services.models, small.services.db,
                          small.services.decl)
    # the cut-off lies just after this test's trashing: older trash went long ago
    assert purge_expired(worker_side, 1, now=utcnow() + timedelta(days=1, seconds=5)) >= 1
    assert len(stored(small)) == len(objects) - 1
    problem(client.get(f"/trashcan/file-{made['id']}"), 404)


def _refuse_at(srv, marker: str, when: str):
    """A create check of the instance that, for files named ``marker``, refuses at the
    insert (``insert``: as a per-period grant does, after the bytes were stored) or
    makes the commit fail (``commit``: a conflict the database reports then)."""
    from sqlalchemy import event
    from sqlalchemy.orm.exc import StaleDataError

    from apicrud.errors import Forbidden

    def check(ctx, resource, data):
        if resource.name != "file" or data.get("name") != marker:
            return
        if when == "insert":
            raise Forbidden("grant file_uploads_per_day exceeded", slug="grant-exceeded")

        def boom(_session):
            raise StaleDataError("changed by another transaction")

        event.listen(ctx.db, "before_commit", boom, once=True)

    checks = srv.app.extensions["apicrud"].pipeline.create_checks
    checks.append(check)
    return lambda: checks.remove(check)


@pytest.mark.parametrize("when,status", [("insert", 403), ("commit", 409)])
def test_a_create_failing_after_the_bytes_were_stored_leaves_no_object(small, server,
                                                                       when, status):
    client = api(small, make_user(server))
    before = stored(small)
    marker = f"doomed-{secrets.token_hex(4)}.png"
    undo = _refuse_at(small, marker, when)
    try:
        problem(upload(client, PNG, name=marker), status)
    finally:
        undo()
    assert stored(small) == before
    assert client.get("/file").json()["items"] == []
    assert upload(client, PNG).status_code == 201  # the next upload is not affected


def test_download_urls_are_short_lived_and_the_lifetime_is_validated(small, server):
    from apicrud.config import ConfigError

    client = api(small, make_user(server))
    made = upload(client, PNG).json()
    link = client.get(f"/file/{made['id']}/url").json()
    expires = int(link["url"].split("expires=")[1].split("&")[0])
    assert 0 < expires - time.time() <= small.settings.file_download_ttl == 60
    for bad in (0, -1, 4, 3601, "soon"):
        with pytest.raises(ConfigError) as info:
            small.settings.replace(file_download_ttl=bad)
        assert "file_download_ttl" in str(info.value)
