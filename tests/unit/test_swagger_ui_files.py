"""The Swagger UI's files and page (apicrud/swagger_ui), without a server.

The vendored swagger-ui-dist files must be the release vendor/VERSION names, byte for
byte (`make swagger-ui` writes both); the browser test (tests/browser/test_swagger_ui.py)
checks the page renders and works.
"""

from __future__ import annotations

import hashlib
import os
import re
from types import SimpleNamespace

from flask import Flask

from apicrud.swagger_ui import HERE, OWN, VENDOR, VENDORED, add_docs, index_html

SPEC = {"openapi": "3.1.0", "info": {"title": "T <&>", "version": "1"}, "paths": {},
        "x-apicrud-resources": {}}


def _vendor_manifest() -> tuple[str, dict[str, str]]:
    with open(os.path.join(VENDOR, "VERSION"), encoding="utf-8") as f:
        text = f.read()
    sums = {name: digest for digest, name in
            re.findall(r"^([0-9a-f]{64})  (\S+)$", text, re.M)}
    return text.splitlines()[0], sums


def test_vendored_files_are_the_pinned_swagger_ui_5_release():
    release, sums = _vendor_manifest()
    assert re.fullmatch(r"swagger-ui-dist 5\.\d+\.\d+", release), release
    # what the page loads, with the licence texts beside it, and nothing unlisted
    assert set(VENDORED) | {"LICENSE", "NOTICE", "swagger-ui-bundle.js.LICENSE.txt"} \
        <= set(sums)
    assert set(os.listdir(VENDOR)) == set(sums) | {"VERSION"}
    for name, digest in sums.items():
        with open(os.path.join(VENDOR, name), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest, \
                f"vendor/{name} is not swagger-ui-dist's: run `make swagger-ui`"
    with open(os.path.join(VENDOR, "swagger-ui-bundle.js"), encoding="utf-8") as f:
        bundle = f.read()
    assert f'PACKAGE_VERSION:"{release.split()[1]}"' in bundle


def test_init_script_reads_its_url_from_the_page_and_calls_nowhere_else():
    with open(os.path.join(HERE, "init.js"), encoding="utf-8") as f:
        script = f.read()
    assert 'getAttribute("data-spec-url")' in script
    assert "validatorUrl: null" in script and "queryConfigEnabled: false" in script
    assert "://" not in script  # no other origin


def test_page_has_no_inline_script_and_escapes_what_it_names():
    version = dict.fromkeys(VENDORED + OWN, "0123456789abcdef")
    page = index_html("/a&b", "T <&>", version)
    assert "<title>T &lt;&amp;&gt;</title>" in page
    assert 'data-spec-url="/a&amp;b/openapi.json"' in page
    assert re.findall(r"<script[^>]*>(.*?)</script>", page, re.S) == ["", ""]
    assert 'src="/a&amp;b/ui/init.js?v=0123456789abcdef"' in page
    assert "style=" not in page and "<style" not in page


def _client(vendor: str):
    app = Flask("t")
    add_docs(app, SimpleNamespace(base_url="/api/v1", spec=SPEC), vendor=vendor)
    return app.test_client()


def test_static_files_are_cached_for_good_only_under_their_current_url():
    client = _client(VENDOR)
    page = client.get("/api/v1/ui/").get_data(as_text=True)
    url = re.search(r'src="(/api/v1/ui/swagger-ui-bundle\.js\?v=[0-9a-f]{16})"', page)[1]
    hit = client.get(url)
    assert hit.status_code == 200
    assert hit.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert hit.headers["X-Content-Type-Options"] == "nosniff"
    stale = client.get("/api/v1/ui/swagger-ui-bundle.js?v=0000000000000000")
    assert stale.status_code == 200 and stale.headers["Cache-Control"] == "no-cache"
    assert "ETag" in stale.headers  # so a revalidation costs a 304, not the bundle
    again = client.get("/api/v1/ui/swagger-ui-bundle.js",
                       headers={"If-None-Match": stale.headers["ETag"]})
    assert again.status_code == 304
    for name in ("VERSION", "LICENSE", "__init__.py", "swagger-ui-bundle.js.LICENSE.txt"):
        assert client.get("/api/v1/ui/" + name).status_code == 404, name
    assert client.get("/api/v1/ui").status_code == 308
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["servers"] == [{"url": "/api/v1"}] and "x-apicrud-resources" not in doc


def test_missing_files_say_how_to_restore_them(tmp_path):
    client = _client(str(tmp_path))
    resp = client.get("/api/v1/ui/")
    assert resp.status_code == 503 and "make swagger-ui" in resp.get_data(as_text=True)
    assert client.get("/api/v1/ui/swagger-ui-bundle.js").status_code == 404
    assert client.get("/api/v1/openapi.json").status_code == 200  # the document still is
