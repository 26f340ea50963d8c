"""The built-in admin UI: a react-admin bundle served at ``/admin/`` (setting ``admin_ui``).

The bundle (``dist/``, built from ``ui/`` by ``make ui``) ships inside the package, so
serving it needs no Node. At start-up the page fetches the OpenAPI document and derives
its screens from it; this module only tells the page where the API lives, by two meta
tags inserted into ``index.html``, and serves the files with headers fit for an admin
page (a strict Content-Security-Policy, no framing, long caching of hashed assets).
Its routes are one Blueprint, ``admin_ui`` (:func:`blueprint`), which ``create_app``
registers when the setting is on.
"""

from __future__ import annotations

import html
import logging
import os
from typing import TYPE_CHECKING

from flask import Blueprint, Flask, Response, redirect, send_from_directory
from werkzeug.wrappers import Response as WerkzeugResponse

if TYPE_CHECKING:
    from apicrud.services import Services

log = logging.getLogger("apicrud.admin_ui")

#: Where the UI is mounted.
PREFIX = "/admin"
DIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dist")

# react-admin's styles (emotion) are injected at run time, hence 'unsafe-inline' for
# styles only; scripts come from this origin alone, the page calls only this origin;
# pictures may be blob: URLs the page made of bytes it fetched (files' previews)
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}
MISSING = ("The admin UI bundle is not built. Run `make ui` (needs Node.js and npm), "
           "or install apicrud from a package that includes it.\n")


def index_html(dist: str, base_url: str, react_admin_url: str) -> str | None:
    """The bundle's ``index.html`` with the API locations as meta tags; None if unbuilt."""
    try:
        with open(os.path.join(dist, "index.html"), encoding="utf-8") as f:
            page = f.read()
    except FileNotFoundError:
        return None
    tags = (f'<meta name="apicrud-base-url" content="{html.escape(base_url)}">\n'
            f'    <meta name="apicrud-react-admin-url" content="{html.escape(react_admin_url)}">\n')
    head = page.find("</head>")
    return page[:head] + "    " + tags + page[head:] if head >= 0 else tags + page


def add_admin_ui(app: Flask, services: Services, dist: str = DIST) -> None:
    """Mount the admin UI on ``app`` when setting ``admin_ui`` is on."""
    bp = blueprint(services, dist)
    if bp is not None:
        app.register_blueprint(bp)


def blueprint(services: Services, dist: str = DIST) -> Blueprint | None:
    """Blueprint ``admin_ui`` at :data:`PREFIX`; None when setting ``admin_ui`` is off
    (or the react-admin endpoints it needs are: setting ``react_admin_url`` empty)."""
    settings = services.settings
    if not settings.admin_ui:
        return None
    ra_url = settings.react_admin_url.rstrip("/")
    if not ra_url:
        log.warning("admin_ui is on but react_admin_url is empty: the admin UI needs the "
                    "react-admin endpoints, so it is not served")
        return None
    page = index_html(dist, services.base_url, ra_url)
    if page is None:
        log.warning("admin UI bundle missing at %s; /admin/ explains how to build it", dist)
    bp = Blueprint("admin_ui", __name__, url_prefix=PREFIX)

    @bp.get("")
    def _admin_redirect() -> WerkzeugResponse:
        return redirect(PREFIX + "/", 308)

    @bp.get("/")
    def _admin_index() -> Response:
        if page is None:
            return Response(MISSING, 503, mimetype="text/plain")
        # index.html names the current asset hashes: always revalidate it
        return Response(page, 200, mimetype="text/html",
                        headers={**PAGE_HEADERS, "Cache-Control": "no-cache"})

    @bp.get("/<path:name>")
    def _admin_static(name: str) -> Response:
        if name == "index.html":
            return _admin_index()
        resp = send_from_directory(dist, name)  # safe_join: no escaping the folder
        for key, value in PAGE_HEADERS.items():
            resp.headers[key] = value
        if name.startswith("assets/"):  # content-hashed names never change meaning
            resp.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return resp

    return bp
