"""API keys over HTTP: issued once, hashed at rest, scoped, expiring, revocable."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from apicrud.auth.apikeys import HASH_SCHEME, operation_scopes
from apicrud.errors import StartupError
from helpers import Api, assert_problem

KEY_RE = re.compile(r"^(ak[0-9a-f]{12})\.([A-Za-z0-9_-]{43})$")


def key_api(server, apikey: str) -> Api:
    api = Api(server.url)
    api.http.headers["X-API-KEY"] = apikey
    return api


def ensure_scope(admin, name: str) -> None:
    resp = admin.api.post("/scope", json={"name": name, "description": f"test scope {name}"})
    assert resp.status_code in (201, 409), resp.text


def new_key(user, **fields) -> dict:
    resp = user.api.post("/apikey", json={"name": f"key-{secrets.token_hex(4)}", **fields})
    assert resp.status_code == 201, resp.text
    return resp.json()


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def stored(server, key_id: str):
    model = server.services.models.ApiKey
    with server.services.db.session() as db:
        return db.execute(select(model).where(model.id == key_id)).scalar_one()


def test_create_shows_key_once_and_stores_only_a_keyed_hash(server, user):
    resp = user.api.post("/apikey", json={"name": "deploy"})
    assert resp.status_code == 201, resp.text
    assert resp.headers["Location"].endswith(f"/apikey/{resp.json()['id']}")
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.json()
    m = KEY_RE.match(body["apikey"])
    assert m, body["apikey"]
    prefix, secret = m.groups()
    assert body["prefix"] == prefix and body["uid"] == user.uid and body["scopes"] == []
    assert "hash" not in body

    again = user.api.get(f"/apikey/{body['id']}").json()
    assert "apikey" not in again and "hash" not in again and again["prefix"] == prefix
    listed = user.api.get("/apikey").json()["items"]
    assert [k["prefix"] for k in listed if k["id"] == body["id"]] == [prefix]
    assert all("apikey" not in k for k in listed)

    row = stored(server, body["id"])
    assert row.hash.startswith(HASH_SCHEME + ":")
    assert secret not in row.hash and body["apikey"] not in row.hash
    assert row.hash.split(":", 1)[1] != hashlib.sha256(body["apikey"].encode()).hexdigest()


def test_key_authenticates_as_its_owner_without_csrf(server, user):
    api = key_api(server, new_key(user)["apikey"])
    me = api.get("/auth").json()
    assert me["uid"] == user.uid and me["method"] == "apikey"
    created = api.post("/list", json={"name": "made-by-key"})  # header credential: no CSRF
    assert created.status_code == 201, created.text
    assert created.json()["uid"] == user.uid
    assert_problem(api.delete("/auth"), 401)  # a key is not a session to log out of


@pytest.mark.parametrize("value", [
    "",
    "not-a-key",
    "ak000000000000.short",
    "ak000000000000." + "A" * 43,  # well formed, unknown prefix
    "x" * 300,
])
def test_bad_keys_get_401(server, value):
    resp = key_api(server, value).get("/auth")
    body = assert_problem(resp, 401)
    assert "WWW-Authenticate" in resp.headers
    assert value[:20] not in body["detail"] or not value


def test_right_prefix_wrong_secret_gets_401(server, user):
    prefix = KEY_RE.match(new_key(user)["apikey"]).group(1)
    forged = f"{prefix}.{secrets.token_urlsafe(32)}"
    assert_problem(key_api(server, forged).get("/auth"), 401)


def test_key_beats_a_bad_bearer_token(server, user):
    api = key_api(server, new_key(user)["apikey"])
    resp = api.get("/auth", headers={"Authorization": "Bearer " + "x" * 43})
    assert resp.status_code == 200 and resp.json()["method"] == "apikey"


def test_scoped_key_may_only_call_operations_of_its_scopes(server, admin, user):
    for name in ("list:read", "category:read"):
        ensure_scope(admin, name)
    key = new_key(user, scopes=["list:read"])
    assert key["scopes"] == ["list:read"]
    api = key_api(server, key["apikey"])
    assert api.get("/list").status_code == 200
    refused = assert_problem(api.post("/list", json={"name": "nope"}), 403)
    assert refused["type"].endswith("insufficient-scope")
    assert "list:write" in refused["detail"]
    assert_problem(api.get("/category"), 403)
    assert_problem(api.get("/auth"), 403)  # auth:read not granted either
    # the owner's session is not narrowed by the key
    assert user.api.post("/list", json={"name": "by-session"}).status_code == 201


def test_scopes_must_exist(server, user):
    missing = f"nothing-{secrets.token_hex(3)}:read"
    body = assert_problem(user.api.post("/apikey", json={"name": "x", "scopes": [missing]}),
                          400, "scopes")
    assert missing in body["errors"]["scopes"]
    assert_problem(user.api.post("/apikey", json={"name": "x", "scopes": ["Bad Name"]}),
                   400, "scopes.0")


def test_scoped_key_cannot_issue_a_broader_key(server, admin, user):
    for name in ("apikey:write", "list:read"):
        ensure_scope(admin, name)
    api = key_api(server, new_key(user, scopes=["apikey:write", "list:read"])["apikey"])
    assert_problem(api.post("/apikey", json={"name": "wide"}), 403, "scopes")
    assert_problem(api.post("/apikey", json={"name": "x", "scopes": ["category:read"]}), 403)
    narrower = api.post("/apikey", json={"name": "narrow", "scopes": ["list:read"]})
    assert narrower.status_code == 201, narrower.text
    assert key_api(server, narrower.json()["apikey"]).get("/list").status_code == 200


def test_scopes_can_be_changed(server, admin, user):
    ensure_scope(admin, "list:read")
    key = new_key(user)
    api = key_api(server, key["apikey"])
    assert api.get("/category").status_code == 200  # unscoped: all the owner may do
    resp = user.api.patch(f"/apikey/{key['id']}", json={"scopes": ["list:read"]})
    assert resp.status_code == 200 and resp.json()["scopes"] == ["list:read"]
    assert_problem(api.get("/category"), 403)
    assert api.get("/list").status_code == 200


def test_expired_key_gets_401(server, user):
    past = iso(datetime.now(UTC) - timedelta(minutes=1))
    assert_problem(user.api.post("/apikey", json={"name": "old", "expires": past}), 400,
                   "expires")
    assert_problem(user.api.post("/apikey", json={"name": "bad", "expires": "tomorrow"}),
                   400, "expires")
    future = datetime.now(UTC) + timedelta(days=1)
    key = new_key(user, expires=iso(future))
    assert key["expires"].startswith(future.strftime("%Y-%m-%dT%H:%M"))
    api = key_api(server, key["apikey"])
    assert api.get("/auth").status_code == 200
    resp = user.api.patch(f"/apikey/{key['id']}", json={"expires": past})
    assert resp.status_code == 200, resp.text
    assert_problem(api.get("/auth"), 401)


def test_revoked_key_gets_401_at_once_and_stays_dead(server, user):
    key = new_key(user)
    api = key_api(server, key["apikey"])
    assert api.get("/list").status_code == 200
    gone = user.api.delete(f"/apikey/{key['id']}")
    assert gone.status_code == 200 and gone.json()["status"] == "disabled"
    assert_problem(api.get("/list"), 401)
    assert_problem(user.api.get(f"/apikey/{key['id']}"), 404)
    row = stored(server, key["id"])
    assert row.expires is not None  # a restore from the trashcan does not revive it


def test_last_used_is_recorded_cheaply(server, user):
    key = new_key(user)
    assert key["last_used"] is None
    api = key_api(server, key["apikey"])
    api.get("/list")
    first = user.api.get(f"/apikey/{key['id']}").json()
    assert first["last_used"] is not None
    version = stored(server, key["id"]).version
    api.get("/list")
    second = user.api.get(f"/apikey/{key['id']}").json()
    assert second["last_used"] == first["last_used"]  # at most one write a minute
    assert stored(server, key["id"]).version == version  # no new ETag for it


def test_keys_are_private_to_owner_and_admins(server, admin, user, other_user):
    key = new_key(user)
    assert_problem(other_user.api.get(f"/apikey/{key['id']}"), 404)
    assert other_user.api.get("/apikey").json()["count"] == 0
    assert_problem(other_user.api.delete(f"/apikey/{key['id']}"), 404)
    assert admin.api.get(f"/apikey/{key['id']}").status_code == 200
    # a user cannot issue a key for someone else
    assert_problem(other_user.api.post("/apikey", json={"name": "theirs", "uid": user.uid}),
                   404, "uid")


def test_prefix_and_hash_are_read_only(server, user):
    key = new_key(user)
    assert_problem(user.api.patch(f"/apikey/{key['id']}", json={"prefix": "ak000000000000"}),
                   400, "prefix")
    assert_problem(user.api.patch(f"/apikey/{key['id']}", json={"hash": "x"}), 400, "hash")
    # apikey is computed: a value sent is ignored (as react-admin echoes fields back)
    chosen = user.api.post("/apikey", json={"name": "y", "apikey": "ak000000000000.mine"})
    assert chosen.status_code == 201 and KEY_RE.match(chosen.json()["apikey"])


def test_scope_resource_admins_write_users_read(server, admin, user):
    name = f"t{secrets.token_hex(3)}:read"
    assert_problem(user.api.post("/scope", json={"name": name}), 403)
    created = admin.api.post("/scope", json={"name": name, "description": "for tests"})
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    assert name in [s["name"] for s in user.api.get("/scope", params={"limit": 1000})
                    .json()["items"]]
    assert_problem(user.api.patch(f"/scope/{sid}", json={"description": "mine"}), 403)
    assert_problem(admin.api.patch(f"/scope/{sid}", json={"name": name + "x"}), 400, "name")
    ok = admin.api.patch(f"/scope/{sid}", json={"description": "changed"})
    assert ok.status_code == 200 and ok.json()["description"] == "changed"
    assert_problem(admin.api.post("/scope", json={"name": name}), 409)


def test_operation_scopes_from_spec_and_defaults(server):
    needed = operation_scopes(server.services.decl.operations)
    assert needed["list.find"] == {"list:read"}
    assert needed["list.create"] == {"list:write"}
    assert needed["apikey.delete"] == {"apikey:write"}
    assert needed["metric.expose"] == {"metrics"}  # declared with x-scopes in the spec
    bad = SimpleNamespace(extensions={"x-scopes": "metrics"}, method="get", path="/x",
                          operation_id="x.get", resource="x")
    with pytest.raises(StartupError, match="x-scopes"):
        operation_scopes([bad])


def test_keys_per_user_are_limited_by_the_apikeys_grant(server, admin, user):
    grant = admin.api.post("/grant", json={"name": "apikeys", "value": 2, "uid": user.uid})
    assert grant.status_code == 201, grant.text
    first, _ = new_key(user), new_key(user)
    refused = assert_problem(user.api.post("/apikey", json={"name": "third"}), 403)
    assert "apikeys" in refused["detail"]
    assert user.api.delete(f"/apikey/{first['id']}").status_code == 200  # revoked: frees one
    assert user.api.post("/apikey", json={"name": "third"}).status_code == 201
