"""Response headers of every surface (API, react-admin dialect, docs, admin UI, and the
problem documents of URLs none of them answers): CORS and ``nosniff``.

:func:`init_app` adds them to a Flask application as ``after_request`` hooks of the
application itself, not of a blueprint, so no response escapes them.

CORS is on when setting ``cors_origins`` lists origins (``"*"`` allows any origin,
without credentials). Then every response says ``Vary: Origin``, whether the request's
origin is allowed or not, or absent: the answer depends on it, and a shared cache must
not hand one origin's answer to another. With CORS off no answer depends on ``Origin``.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask, Response, request

__all__ = ["CORS_EXPOSED_HEADERS", "CORS_REQUEST_HEADERS", "init_app"]

CORS_REQUEST_HEADERS = "Authorization, Content-Type, Range, If-Match, X-API-KEY, " \
    "X-CSRF-Token, X-Request-ID, Prefer, Cache-Control"
CORS_EXPOSED_HEADERS = "Content-Range, X-Total-Count, ETag, Location, X-Request-ID, " \
    "Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, RateLimit-Policy"


def init_app(app: Flask, cors_origins: Iterable[str]) -> None:
    """CORS for ``cors_origins`` (when any) and ``nosniff`` on every response of ``app``."""
    _add_cors(app, set(cors_origins))
    _add_nosniff(app)


def _add_cors(app: Flask, origins: set[str]) -> None:
    if not origins:
        return

    @app.after_request
    def _cors(response: Response) -> Response:
        # every answer depends on Origin (allowed or not): caches must key on it
        response.vary.add("Origin")
        origin = request.headers.get("Origin")
        if not origin or (origin not in origins and "*" not in origins):
            return response
        if origin in origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
        else:
            response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED_HEADERS
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = \
                "GET, POST, PUT, PATCH, DELETE, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = CORS_REQUEST_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
        return response


def _add_nosniff(app: Flask) -> None:
    """``X-Content-Type-Options: nosniff`` on every response: a browser must never run a
    JSON answer (or anything else served here) as another content type."""

    @app.after_request
    def _nosniff(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response
