"""Files on S3: an S3-compatible server (moto in server mode) started on loopback, and
apicrud talking to it over HTTP with boto3, as it would to any S3 service."""

from __future__ import annotations

import hashlib
import secrets

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

import logscan
from helpers import Api, make_user, serve_app

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00"
       b"\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05"
       b"\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")
BUCKET = "apicrud-files"
PREFIX = "uploads/"
LIMIT = 32 * 1024 * 1024


@pytest.fixture(scope="module")
def s3(settings, server):
    """(the apicrud instance on S3, a boto3 client of the S3 server)."""
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    key_id, secret = "AKIA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)
    logscan.SECRETS.add(secret, "setting s3_secret_access_key")
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=key_id, aws_secret_access_key=secret)
    client.create_bucket(Bucket=BUCKET)
    s = settings.replace(file_storage="s3", s3_bucket=BUCKET, s3_prefix=PREFIX,
                         s3_endpoint_url=endpoint, s3_access_key_id=key_id,
                         s3_secret_access_key=secret, file_max_bytes=LIMIT)
    try:
        with serve_app(s) as srv:
            yield srv, client
    finally:
        moto.stop()


def objects(client) -> list[str]:
    listed = client.list_objects_v2(Bucket=BUCKET)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def upload(client: Api, data: bytes, name="pic.png", ctype="image/png"):
    return client.post("/file", files={"content": (name, data, ctype)})


def test_upload_download_and_purge_on_s3(s3, server):
    srv, boto = s3
    owner = make_user(server)
    client = Api(srv.url, owner.token)
    before = objects(boto)
    made = upload(client, PNG)
    assert made.status_code == 201, made.text
    fid = made.json()["id"]
    new = sorted(set(objects(boto)) - set(before))
    assert len(new) == 1 and new[0].startswith(PREFIX)
    key = new[0][len(PREFIX):]
    assert len(key) == 40 and fid not in key and "pic" not in key  # not guessable
    grants = boto.get_object_acl(Bucket=BUCKET, Key=new[0])["Grants"]
    assert all("AllUsers" not in str(g) and "AuthenticatedUsers" not in str(g)
               for g in grants)  # private: only the bucket owner
    got = client.get(f"/file/{fid}/content")
    assert got.content == PNG and got.headers["Content-Disposition"].startswith("attachment")
    # the presigned URL of the storage itself, short-lived, forcing an attachment
    link = client.get(f"/file/{fid}/url").json()
    assert link["url"].startswith(srv.settings.s3_endpoint_url)
    assert "X-Amz-Expires=60" in link["url"] and "X-Amz-Signature=" in link["url"]
    direct = requests.get(link["url"], timeout=30)
    assert direct.status_code == 200 and direct.content == PNG
    assert direct.headers["Content-Disposition"].startswith("attachment")
    assert client.delete(f"/file/{fid}").status_code == 200
    assert new[0] in objects(boto)  # restorable while in the trashcan
    assert client.delete(f"/trashcan/file-{fid}").status_code == 200
    assert new[0] not in objects(boto)


def test_large_upload_goes_in_parts_and_an_oversized_one_leaves_nothing(s3, server):
    srv, boto = s3
    client = Api(srv.url, make_user(server).token)
    data = b"abcdefgh" * (20 * 1024 * 1024 // 8)  # 20 MiB: three parts of a multipart upload
    made = upload(client, data, name="big.txt", ctype="text/plain")
    assert made.status_code == 201, made.text
    assert made.json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert client.get(f"/file/{made.json()['id']}/content").content == data
    before = objects(boto)
    boundary = "b" + secrets.token_hex(6)

    def chunked():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; "
               f"filename=\"huge.txt\"\r\n\r\n").encode()
        for _ in range(LIMIT // (1024 * 1024) + 2):
            yield b"z" * (1024 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    resp = client.post("/file", data=chunked(), headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"}, timeout=120)
    assert resp.status_code == 413, resp.text[:200]
    assert objects(boto) == before
    assert boto.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_presigned_direct_upload_then_confirm(s3, server):
    srv, _boto = s3
    client = Api(srv.url, make_user(server).token)
    data = PNG + secrets.token_bytes(64)
    made = client.post("/file/direct", json={"name": "d.png", "size": len(data),
                                             "sha256": hashlib.sha256(data).hexdigest()})
    assert made.status_code == 201, made.text
    fid, up = made.json()["file"]["id"], made.json()["upload"]
    assert up["method"] == "PUT" and up["url"].startswith(srv.settings.s3_endpoint_url)
    assert client.post(f"/file/{fid}/confirm").status_code == 409  # nothing there yet
    assert requests.put(up["url"], data=data, headers=up["headers"], timeout=30) \
        .status_code == 200
    done = client.post(f"/file/{fid}/confirm")
    assert done.status_code == 200, done.text
    assert done.json()["content_type"] == "image/png" and done.json()["state"] == "ready"
    assert client.get(f"/file/{fid}/content").content == data


def test_swapped_direct_upload_is_refused_and_deleted(s3, server):
    srv, boto = s3
    client = Api(srv.url, make_user(server).token)
    data = PNG + b"\x00" * 64
    made = client.post("/file/direct", json={"name": "d.png", "size": len(data),
                                             "sha256": hashlib.sha256(data).hexdigest()})
    fid, up = made.json()["file"]["id"], made.json()["upload"]
    before = objects(boto)
    for swapped in (PNG + b"\x01" * 64, data + b"longer"):
        assert requests.put(up["url"], data=swapped, timeout=30).status_code == 200
        resp = client.post(f"/file/{fid}/confirm")
        assert resp.status_code == 409, resp.text
        assert objects(boto) == before
    html = b"<html><script>alert(1)</script></html>"
    made = client.post("/file/direct", json={"name": "x.png", "size": len(html)}).json()
    assert requests.put(made["upload"]["url"], data=html, timeout=30).status_code == 200
    assert client.post(f"/file/{made['file']['id']}/confirm").status_code == 415
    assert objects(boto) == before


def test_a_trashed_file_gets_no_url_and_no_content_on_s3(s3, server):
    """Trashing stops every way in through apicrud; a presigned URL issued before is the
    storage's own and lives out its short lifetime (file_download_ttl): it cannot be
    revoked, which is why it is short."""
    srv, _boto = s3
    client = Api(srv.url, make_user(server).token)
    fid = upload(client, PNG).json()["id"]
    issued = client.get(f"/file/{fid}/url").json()
    assert "X-Amz-Expires=60" in issued["url"]
    assert client.delete(f"/file/{fid}").status_code == 200
    for tail in ("/url", "/content", "/thumbnail", ""):
        resp = client.get(f"/file/{fid}{tail}")
        assert resp.status_code == 404, (tail, resp.status_code)
    # the documented limit: the storage still honours the URL until it expires
    assert requests.get(issued["url"], timeout=30).status_code == 200
