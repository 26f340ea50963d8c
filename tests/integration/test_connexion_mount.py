"""What only the connexion mount has (apicrud.connexion_mount): connexion's Swagger UI and
document list apicrud's operations in OpenAPI 3.0, and a mount is refused where it could
not work. The answers themselves are tests/integration/test_engines.py's."""

from __future__ import annotations

import pytest
import requests

from connexion_engine import serve_connexion


@pytest.fixture(scope="module")
def mounted(server):
    with serve_connexion(server.settings) as srv:
        yield srv


def test_connexion_serves_the_document_in_30_with_apicrud_operations(mounted):
    doc = requests.get(mounted.url + "/openapi.json", timeout=30).json()
    assert doc["openapi"].startswith("3.0")
    assert "x-apicrud-resources" not in doc
    ops = {op["operationId"] for item in doc["paths"].values() for op in item.values()
           if isinstance(op, dict) and "operationId" in op}
    assert {"list.find", "list.create", "list.get", "message.find", "auth.login"} <= ops
    modified = doc["components"]["schemas"]["List"]["properties"]["modified"]
    assert modified["nullable"] is True and modified["type"] == "string"
    # connexion's document names the mount as its server
    assert doc["servers"][0]["url"].endswith(mounted.settings.base_url)


def test_connexion_swagger_ui_is_served_for_the_mount(mounted):
    page = requests.get(mounted.url + "/ui/", timeout=30)
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert "openapi.json" in page.text


def test_a_mount_is_refused_on_a_started_app_and_twice_at_one_base(mounted):
    import connexion

    from apicrud.connexion_mount import add_apicrud_api

    with pytest.raises(RuntimeError):  # its middleware stack is built
        add_apicrud_api(mounted.cx_app, mounted.settings)
    fresh = connexion.FlaskApp(__name__)
    app = add_apicrud_api(fresh, mounted.settings, migrate=False)
    try:
        with pytest.raises(ValueError, match="mounted at /api/v1 already"):
            add_apicrud_api(fresh, mounted.settings, migrate=False)
    finally:
        app.extensions["apicrud"].close()


def test_an_async_app_mounts_apicrud_too(server):
    import connexion

    from apicrud.connexion_mount import add_apicrud_api
    from connexion_engine import UvicornThread

    cx_app = connexion.AsyncApp(__name__)
    app = add_apicrud_api(cx_app, server.settings.replace(instance_id="cx-async"),
                          migrate=False)
    runner = UvicornThread(cx_app).start()
    try:
        url = f"http://127.0.0.1:{runner.port}{server.settings.base_url}"
        resp = requests.get(url + "/list", timeout=30)
        assert resp.status_code == 401 and resp.json()["message"] == resp.json()["detail"]
        assert requests.get(url + "/health", timeout=30).json()["status"] == "ok"
    finally:
        runner.stop()
        app.extensions["apicrud"].close()


def test_the_resolved_views_answer_as_apicrud_too(mounted):
    """What connexion's resolver holds for each operationId: a view handing the request
    to apicrud's application (the middleware answers before connexion would call it)."""
    import flask

    from apicrud.connexion_mount import apicrud_resolver

    view = apicrud_resolver(mounted.app).resolve_function_from_operation_id("list.find")
    assert view.__name__ == "apicrud_list_find"
    with flask.Flask("outer").test_request_context(mounted.settings.base_url + "/list"):
        resp = view()
    assert resp.status_code == 401 and resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.get_json()["message"] == "Authentication required"
