"""The application's surfaces, one Blueprint each (apicrud/app.py), over HTTP.

The API, the react-admin dialect, the docs and the admin UI are blueprints of the one
application; CORS and ``nosniff`` are hooks of the application, so every surface's
answers carry them, errors and URLs no surface answers included.
"""

from __future__ import annotations

import requests

from instances import start_instance

ALLOWED = "https://app.example"


def _root(url: str, base: str) -> str:
    return url[: -len(base)]


def _vary(resp: requests.Response) -> list[str]:
    return [v.strip().lower() for v in resp.headers.get("Vary", "").split(",") if v.strip()]


def test_each_surface_is_a_blueprint_owning_its_urls(server):
    app = server.app
    assert set(app.blueprints) == {"api", "react_admin", "docs", "admin_ui"}
    # no rule outside a blueprint: every URL belongs to a surface
    assert all("." in rule.endpoint for rule in app.url_map.iter_rules()), \
        [rule.endpoint for rule in app.url_map.iter_rules() if "." not in rule.endpoint]
    owners = {rule.rule: rule.endpoint.partition(".")[0] for rule in app.url_map.iter_rules()}
    base, ra = server.settings.base_url, server.settings.react_admin_url
    assert owners[base + "/list/<id>"] == "api"
    assert owners[ra + "/list/<id>"] == "react_admin"
    assert owners[base + "/openapi.json"] == "docs" and owners[base + "/ui/"] == "docs"
    assert owners["/admin/"] == "admin_ui"
    root = _root(server.url, base)
    for path, status in ((base + "/health", 200), (base + "/openapi.json", 200),
                         (base + "/ui/", 200), ("/admin/", 200), (ra + "/list", 401),
                         (base + "/list", 401)):
        resp = requests.get(root + path, timeout=30)
        assert resp.status_code == status, (path, resp.status_code, resp.text[:200])
        assert resp.headers["X-Content-Type-Options"] == "nosniff", path


def test_cors_answers_say_vary_origin_on_every_surface(server, user):
    inst = start_instance(server.settings, redis_url=server.services.redis.url,
                          cors_origins=[ALLOWED])
    try:
        base = inst.settings.base_url
        ra = inst.settings.react_admin_url
        root = _root(inst.url, base)
        auth = {"Authorization": f"Bearer {user.token}"}
        paths = [base + "/list", ra + "/list", base + "/openapi.json", base + "/ui/",
                 base + "/ui/swagger-ui.css", "/admin/", "/admin/assets/nope.js",
                 "/nothing-here", ra + "/nothing-here"]
        for origin in (None, ALLOWED, "https://evil.example"):
            headers = {**auth, **({"Origin": origin} if origin else {})}
            for path in paths:
                resp = requests.get(root + path, headers=headers, timeout=30)
                assert "origin" in _vary(resp), (path, origin, resp.headers)
                allowed = resp.headers.get("Access-Control-Allow-Origin")
                assert allowed == (ALLOWED if origin == ALLOWED else None), \
                    (path, origin, resp.headers)
        ok = requests.get(root + ra + "/list", headers={**auth, "Origin": ALLOWED},
                          timeout=30)
        assert ok.status_code == 200 and isinstance(ok.json(), list)
        assert "Content-Range" in ok.headers["Access-Control-Expose-Headers"]
        # a react-admin page on another origin asks first (preflight), then sends
        pre = requests.options(root + ra + "/list", timeout=30, headers={
            "Origin": ALLOWED, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization"})
        assert pre.status_code == 200, pre.text
        assert "origin" in _vary(pre)
        assert pre.headers["Access-Control-Allow-Origin"] == ALLOWED
        assert pre.headers["Access-Control-Allow-Credentials"] == "true"
        assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
    finally:
        inst.stop()


def test_without_cors_no_answer_depends_on_origin(server, user):
    assert not server.settings.cors_origins
    root = _root(server.url, server.settings.base_url)
    for path in (server.settings.base_url + "/list", server.settings.react_admin_url + "/list",
                 server.settings.base_url + "/openapi.json", "/admin/", "/nothing-here"):
        resp = requests.get(root + path, timeout=30, headers={
            "Authorization": f"Bearer {user.token}", "Origin": ALLOWED})
        assert "Access-Control-Allow-Origin" not in resp.headers, path
        assert "origin" not in _vary(resp), (path, resp.headers)
