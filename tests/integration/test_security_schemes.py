"""An operation is authenticated only by the security schemes it lists (issue 12 item 2).

An instance of the default application serves a copy of its spec whose document-level
``security`` admits bearer tokens only, and whose ``GET /category/{id}`` admits the API
key header only: every other credential, valid as it is, is refused there with 401; on a
public operation it is ignored (the request runs anonymous). The served document names
the cookie scheme after the ``cookie_name`` setting.
"""

from __future__ import annotations

import base64
import os
import shutil

import pytest
import requests
import yaml

from instances import new_account, start_instance

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def world(server, tmp_path_factory):
    spec_dir = tmp_path_factory.mktemp("spec") / "openapi"
    shutil.copytree(os.path.join(ROOT, "openapi"), spec_dir)
    api = spec_dir / "api.yaml"
    text = api.read_text()
    assert "\nsecurity:\n  - bearer: []\n  - basic: []\n  - cookie: []\n  - apikey: []\n" in text
    api.write_text(text.replace(
        "\nsecurity:\n  - bearer: []\n  - basic: []\n  - cookie: []\n  - apikey: []\n",
        "\nsecurity:\n  - bearer: []\n", 1))
    category = spec_dir / "category.path.yaml"
    doc = yaml.safe_load(category.read_text())
    doc["item"]["get"]["security"] = [{"apikey": []}]
    category.write_text(yaml.safe_dump(doc, sort_keys=False))
    inst = start_instance(server.settings, redis_url=server.services.redis.url,
                          openapi_dir=str(spec_dir), cookie_name="my_sid")
    try:
        username, password, uid = new_account(inst.services)
        resp = requests.post(inst.url + "/auth", json={"username": username,
                                                       "password": password}, timeout=10)
        assert resp.status_code == 201, resp.text
        login = resp.json()
        token = login["token"]
        bearer = {"Authorization": f"Bearer {token}"}
        created = requests.post(inst.url + "/category", json={"name": "schemes-probe"},
                                headers=bearer, timeout=10)
        assert created.status_code == 201, created.text
        key = requests.post(inst.url + "/apikey", json={"name": "k", "scopes": []},
                            headers=bearer, timeout=10)
        assert key.status_code == 201, key.text
        yield {"inst": inst, "uid": uid, "token": token, "csrf": login.get("csrf"),
               "category": created.json()["id"], "key": key.json()["apikey"]}
    finally:
        inst.stop()


def _get(world, path, **kw):
    return requests.get(world["inst"].url + path, timeout=10, **kw)


def test_a_listed_scheme_authenticates(world):
    resp = _get(world, "/category", headers={"Authorization": f"Bearer {world['token']}"})
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("how", ["cookie", "basic", "apikey"])
def test_a_valid_credential_of_an_unlisted_scheme_is_refused(world, how):
    if how == "cookie":
        kw = {"cookies": {"my_sid": world["token"]}}
    elif how == "basic":
        raw = base64.b64encode(f"{world['uid']}:{world['token']}".encode()).decode()
        kw = {"headers": {"Authorization": f"Basic {raw}"}}
    else:
        kw = {"headers": {"X-API-KEY": world["key"]}}
    resp = _get(world, "/category", **kw)
    assert resp.status_code == 401, resp.text
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert f"does not accept {how} credentials" in resp.json()["detail"]


def test_an_operation_of_its_own_admits_only_its_scheme(world):
    path = f"/category/{world['category']}"
    assert _get(world, path, headers={"X-API-KEY": world["key"]}).status_code == 200
    refused = _get(world, path, headers={"Authorization": f"Bearer {world['token']}"})
    assert refused.status_code == 401
    assert "does not accept bearer credentials" in refused.json()["detail"]


def test_a_public_operation_ignores_an_unlisted_credential(world):
    # GET /health is public: the API key is ignored, not refused, and not applied
    resp = _get(world, "/health", headers={"X-API-KEY": world["key"]})
    assert resp.status_code == 200, resp.text


def test_the_served_cookie_scheme_is_named_after_the_setting(world):
    doc = requests.get(world["inst"].url + "/openapi.json", timeout=10).json()
    assert doc["components"]["securitySchemes"]["cookie"]["name"] == "my_sid"


def test_a_compiled_operation_is_frozen(server):
    op = next(o for o in server.services.decl.operations if o.operation_id == "category.find")
    with pytest.raises(AttributeError, match="frozen"):
        op.public = True
    with pytest.raises(TypeError):
        op.extensions["x-public"] = True
    with pytest.raises(AttributeError):
        op.params.append(None)
    assert op.public is False
