"""The served OpenAPI document (``{base}/openapi.json``) and a Swagger UI for it (``{base}/ui/``).

The UI is swagger-ui 5 (it reads OpenAPI 3.1), the files of npm's ``swagger-ui-dist``
committed in ``vendor/`` (``make swagger-ui`` refreshes them; ``vendor/VERSION`` names the
release), so serving it needs no Node and no network. The page runs no inline script:
``init.js`` starts the UI, reading the document's URL from a data attribute, so the page
carries a strict Content-Security-Policy. Static files are named in the page with a hash
of their content (``?v=``): with the current hash they are cached for good, otherwise
revalidated.

The document and the UI are one Blueprint, ``docs`` (:func:`blueprint`), mounted at
setting ``base_url``; ``create_app`` registers it.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import logging
import os
from typing import TYPE_CHECKING

from flask import Blueprint, Flask, Response, abort, redirect, request, send_from_directory
from werkzeug.wrappers import Response as WerkzeugResponse

if TYPE_CHECKING:
    from apicrud.services import Services

log = logging.getLogger("apicrud.swagger_ui")

HERE = os.path.dirname(os.path.abspath(__file__))
VENDOR = os.path.join(HERE, "vendor")
#: The files the page may load: swagger-ui-dist's (in vendor/) and init.js (ours, here).
#: Nothing else is served.
VENDORED = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png",
            "favicon-16x16.png")
OWN = ("init.js",)

# swagger-ui styles through the DOM's style properties, not style attributes or <style>
# elements, so styles need no 'unsafe-inline'; its icons are data: SVGs; the page talks
# only to this origin (the document and "Try it out"); validatorUrl is off in init.js.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}
IMMUTABLE = "public, max-age=31536000, immutable"
MISSING = ("The Swagger UI files are missing from apicrud/swagger_ui/vendor. Run "
           "`make swagger-ui` (needs npm), or install apicrud from a package that includes "
           "them. The OpenAPI document is at {base}/openapi.json.\n")


@functools.cache
def _digest(path: str) -> str | None:
    """A short hash of a file's content (None if missing): the ``?v=`` of its URL."""
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()[:16]
    except FileNotFoundError:
        return None


def files(vendor: str = VENDOR) -> dict[str, str]:
    """Each file the page may load -> the folder it is served from."""
    return {**dict.fromkeys(VENDORED, vendor), **dict.fromkeys(OWN, HERE)}


def versions(folders: dict[str, str]) -> dict[str, str | None]:
    """Each served file's content hash, None for a missing one."""
    return {name: _digest(os.path.join(folder, name)) for name, folder in folders.items()}


def index_html(base: str, title: str, version: dict[str, str | None]) -> str:
    """The page: stylesheet, favicon, the bundle and init.js; no inline script or style."""
    ui = html.escape(base + "/ui/")

    def url(name: str) -> str:
        return f"{ui}{name}?v={version[name]}"

    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<link rel="stylesheet" href="{url("swagger-ui.css")}">
<link rel="icon" type="image/png" sizes="32x32" href="{url("favicon-32x32.png")}">
<link rel="icon" type="image/png" sizes="16x16" href="{url("favicon-16x16.png")}">
</head>
<body>
<div id="swagger-ui" data-spec-url="{html.escape(base + "/openapi.json")}"></div>
<script src="{url("swagger-ui-bundle.js")}"></script>
<script src="{url("init.js")}"></script>
</body>
</html>
"""


def add_docs(app: Flask, services: Services, vendor: str = VENDOR) -> None:
    """Register the docs :func:`blueprint` on ``app``."""
    app.register_blueprint(blueprint(services, vendor))


def blueprint(services: Services, vendor: str = VENDOR) -> Blueprint:
    """Blueprint ``docs``: the OpenAPI document at ``{base}/openapi.json`` and the UI at
    ``{base}/ui/`` (swagger-ui's files from ``vendor``)."""
    base = services.base_url
    bp = Blueprint("docs", __name__, url_prefix=base)
    document = dict(services.spec)
    document.pop("x-apicrud-resources", None)
    document["servers"] = [{"url": base}]
    spec_json = json.dumps(document)

    @bp.get("/openapi.json")
    def _openapi() -> Response:
        return Response(spec_json, 200, mimetype="application/json")

    folders = files(vendor)
    version = versions(folders)
    missing = sorted(name for name, digest in version.items() if digest is None)
    if missing:
        log.warning("Swagger UI files missing (%s); %s/ui/ explains how to restore them",
                    ", ".join(missing), base)
        page = None
    else:
        title = str(document.get("info", {}).get("title") or "API") + " - Swagger UI"
        page = index_html(base, title, version)

    @bp.get("/ui")
    def _ui_redirect() -> WerkzeugResponse:
        return redirect(base + "/ui/", 308)

    @bp.get("/ui/")
    def _ui() -> Response:
        if page is None:
            return Response(MISSING.format(base=base), 503, mimetype="text/plain",
                            headers={**PAGE_HEADERS, "Cache-Control": "no-cache"})
        # the page names the files' current hashes: always revalidate it
        return Response(page, 200, mimetype="text/html",
                        headers={**PAGE_HEADERS, "Cache-Control": "no-cache"})

    @bp.get("/ui/<name>")
    def _ui_static(name: str) -> Response:
        if name == "index.html":
            return _ui()
        folder = folders.get(name)
        if folder is None or version[name] is None:
            abort(404)  # the application renders it as a problem document
        resp = send_from_directory(folder, name)
        resp.headers.update(PAGE_HEADERS)
        # the URL the page uses (current hash) never changes meaning; any other is revalidated
        current = request.args.get("v") == version[name]
        resp.headers["Cache-Control"] = IMMUTABLE if current else "no-cache"
        return resp

    return bp
