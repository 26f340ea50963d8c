"""Pictures through a real Celery worker: thumbnails, and EXIF location removed unless
the owner keeps it."""

from __future__ import annotations

import io
import secrets

import pytest
from PIL import Image

from helpers import Api, make_user, serve_app
from mailhelp import run_worker, wait_for

GPS = 0x8825


def photo(fmt: str = "JPEG", size=(800, 600)) -> bytes:
    """A picture that says where it was taken (EXIF GPS) and with which camera."""
    image = Image.new("RGB", size, (200, 40, 40))
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    exif.get_ifd(GPS).update({1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)})
    out = io.BytesIO()
    image.save(out, fmt, exif=exif.tobytes())
    return out.getvalue()


@pytest.fixture(scope="module")
def pics(settings, server, tmp_path_factory):
    s = settings.replace(file_dir=str(tmp_path_factory.mktemp("pics")),
                         worker_queue=f"test-pictures-{secrets.token_hex(4)}")
    with serve_app(s) as srv, run_worker(s, srv.services.redis.url):
        yield srv


def processed(client: Api, fid: str) -> dict:
    return wait_for(lambda: (lambda b: b if b.get("thumbnail") else None)(
        client.get(f"/file/{fid}").json()), 30, "the thumbnail")


@pytest.mark.parametrize("fmt,ctype", [("JPEG", "image/jpeg"), ("PNG", "image/png"),
                                       ("WEBP", "image/webp")])
def test_thumbnail_made_and_location_removed(pics, server, fmt, ctype):
    client = Api(pics.url, make_user(server).token)
    data = photo(fmt)
    made = client.post("/file", files={"content": (f"p.{fmt.lower()}", data, ctype)})
    assert made.status_code == 201, made.text
    body = processed(client, made.json()["id"])
    thumb = client.get(body["thumbnail"].split("/api/v1", 1)[1])
    assert thumb.status_code == 200
    assert thumb.headers["Content-Disposition"].startswith("attachment")
    small = Image.open(io.BytesIO(thumb.content))
    assert small.format == "JPEG" and max(small.size) == 256
    assert not small.getexif()  # no metadata at all in a thumbnail
    original = client.get(f"/file/{body['id']}/content").content
    kept = Image.open(io.BytesIO(original))
    assert kept.size == (800, 600)
    exif = kept.getexif()
    assert exif.get_ifd(GPS) == {} and exif.get(0x010F) == "TestCam"
    assert body["size"] == len(original) and body["sha256"] != made.json()["sha256"]


def test_owner_may_keep_the_location(pics, server):
    client = Api(pics.url, make_user(server).token)
    data = photo()
    made = client.post("/file", data={"keep_location": "true"},
                       files={"content": ("p.jpg", data, "image/jpeg")})
    assert made.status_code == 201 and made.json()["keep_location"] is True
    body = processed(client, made.json()["id"])
    original = client.get(f"/file/{body['id']}/content").content
    assert original == data
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(GPS)[1] == "N"


def test_a_picture_of_too_many_pixels_is_left_alone(pics, server, caplog):
    caplog.set_level("INFO", logger="apicrud.files")
    """A decompression bomb: a small PNG of 144 million pixels."""
    client = Api(pics.url, make_user(server).token)
    out = io.BytesIO()
    Image.new("1", (12000, 12000)).save(out, "PNG")  # zeros: tiny on disk
    made = client.post("/file", files={"content": ("bomb.png", out.getvalue(), "image/png")})
    assert made.status_code == 201
    wait_for(lambda: any(getattr(r, "event", None) == "file_picture_skipped"
                         for r in caplog.records), 30, "the worker to skip the bomb")
    assert client.get(f"/file/{made.json()['id']}").json()["thumbnail"] is None
