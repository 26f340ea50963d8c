"""Serving the built-in admin UI at /admin/ (the browser tests are in tests/browser/).

The bundle is committed inside the package: these tests check that it is there, that it
was built from the sources under ui/ as they are now, and how it is served.
"""

from __future__ import annotations

import hashlib
import os
import re

import pytest
import requests
from flask import Flask

from apicrud.admin_ui import DIST, add_admin_ui
from helpers import ROOT

UI = os.path.join(ROOT, "ui")
UI_SOURCES = ("index.html", "package.json", "package-lock.json", "vite.config.js", "src")


def _root(server) -> str:
    return server.url[: -len(server.settings.base_url)]


def ui_source_hash() -> str:
    """The same hash as ui/vite.config.js's sourceHash(): sorted paths and contents."""
    paths = []
    for name in UI_SOURCES:
        path = os.path.join(UI, name)
        if os.path.isdir(path):
            for folder, _, files in os.walk(path):
                paths += [os.path.relpath(os.path.join(folder, f), UI).replace(os.sep, "/")
                          for f in files]
        else:
            paths.append(name)
    digest = hashlib.sha256()
    for rel in sorted(paths):
        digest.update(rel.encode() + b"\0")
        with open(os.path.join(UI, rel), "rb") as f:
            digest.update(f.read())
        digest.update(b"\0")
    return digest.hexdigest()


def test_bundle_is_built_from_the_current_sources():
    with open(os.path.join(DIST, "source-hash.txt"), encoding="utf-8") as f:
        built_from = f.read().strip()
    assert built_from == ui_source_hash(), \
        "ui/ changed since apicrud/admin_ui/dist was built: run `make ui` and commit dist/"


def test_index_names_the_api_and_is_locked_down(server):
    resp = requests.get(_root(server) + "/admin/", timeout=30)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    page = resp.text
    assert '<meta name="apicrud-base-url" content="/api/v1">' in page
    assert '<meta name="apicrud-react-admin-url" content="/api/v1/ra">' in page
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Cache-Control"] == "no-cache"

    scripts = re.findall(r'src="\./(assets/[^"]+\.js)"', page)
    assert scripts, page
    for name in scripts:
        asset = requests.get(_root(server) + "/admin/" + name, timeout=30)
        assert asset.status_code == 200
        assert "javascript" in asset.headers["Content-Type"]
        assert "immutable" in asset.headers["Cache-Control"]
        assert asset.headers["X-Content-Type-Options"] == "nosniff"


def test_paths_outside_the_bundle_are_not_served(server):
    root = _root(server)
    bare = requests.get(root + "/admin", allow_redirects=False, timeout=30)
    assert bare.status_code == 308 and bare.headers["Location"].endswith("/admin/")
    for path in ("/admin/assets/nope.js", "/admin/..%2f__init__.py",
                 "/admin/%2e%2e/__init__.py", "/admin/assets/..%2f..%2f__init__.py"):
        resp = requests.get(root + path, timeout=30)
        assert resp.status_code == 404, path
        assert resp.headers["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize("changes", [{"admin_ui": False}, {"react_admin_url": ""}])
def test_not_mounted_when_off(server, changes):
    from apicrud.app import create_app

    app = create_app(settings=server.settings.replace(**changes), migrate=False)
    try:
        resp = app.test_client().get("/admin/")
        assert resp.status_code == 404
    finally:
        app.extensions["apicrud"].close()


def test_missing_bundle_says_how_to_build_it(server, tmp_path):
    app = Flask("admin-ui-test")
    add_admin_ui(app, server.services, dist=str(tmp_path))
    resp = app.test_client().get("/admin/")
    assert resp.status_code == 503
    assert b"make ui" in resp.data
