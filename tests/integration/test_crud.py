"""BasicCRUD over HTTP: every status code of CONTRACT sections 1 and 3."""

from __future__ import annotations

import re

import pytest

from helpers import PROBLEM, assert_problem, new_list

# -- create ---------------------------------------------------------------------------

def test_create_valid_body_returns_201_location_and_record(user, server):
    resp = user.api.post("/category", json={"name": "books", "description": "to read"})
    assert resp.status_code == 201
    body = resp.json()
    assert body["id"].startswith(server.settings.id_prefix)
    assert 10 <= len(body["id"]) - len(server.settings.id_prefix) <= 16
    assert resp.headers["Location"].endswith(f"/api/v1/category/{body['id']}")
    assert body["name"] == "books" and body["uid"] == user.uid
    assert body["created"].endswith("Z") and body["modified"] is None
    assert body["status"] == "active" and body["rbac"] == "cdlru"


def test_create_sets_owner_to_caller_and_defaults(user):
    body = new_list(user.api)
    assert body["uid"] == user.uid and body["privacy"] == "secret"


def test_create_for_another_uid_is_refused_for_users(user, other_user):
    # a person the caller cannot read is an unusable id: 404 naming the field
    resp = user.api.post("/category", json={"name": "x", "uid": other_user.uid})
    assert_problem(resp, 404, "uid")
    # one they can read (public) is still not theirs to create records for
    assert other_user.api.patch(f"/person/{other_user.uid}",
                                json={"privacy": "public"}).status_code == 200
    resp = user.api.post("/category", json={"name": "x", "uid": other_user.uid})
    assert_problem(resp, 403)
    assert other_user.api.get("/category").json()["count"] == 0


def test_create_for_another_uid_is_allowed_for_admin(admin, user):
    resp = admin.api.post("/category", json={"name": "assigned", "uid": user.uid})
    assert resp.status_code == 201, resp.text
    assert user.api.get(f"/category/{resp.json()['id']}").status_code == 200


@pytest.mark.parametrize("body,field", [
    ({"name": "x", "colour": "red"}, "colour"),
    ({"name": 42}, "name"),
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "x", "id": "x-chosen-by-me"}, "id"),
    ({"name": "x", "created": "2020-01-01T00:00:00Z"}, "created"),
    ({"name": "x" * 65}, "name"),
])
def test_create_invalid_body_returns_400_naming_field(user, body, field):
    resp = user.api.post("/category", json=body)
    assert_problem(resp, 400, field)
    assert user.api.get("/category").json()["count"] == 0


def test_create_malformed_json_returns_400(user):
    resp = user.api.post("/category", data=b'{"name": ', headers={
        "Content-Type": "application/json"})
    assert_problem(resp, 400, "body")


@pytest.mark.parametrize("payload", [b"[]", b"null", b'"name"', b"12", b"\xff\xfe"])
def test_create_non_object_body_returns_400(user, payload):
    resp = user.api.post("/category", data=payload,
                         headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert resp.headers["Content-Type"].startswith(PROBLEM)


def test_create_wrong_content_type_returns_415(user):
    resp = user.api.post("/category", data="name=x",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_problem(resp, 415)


def test_create_duplicate_unique_returns_409_and_writes_nothing(user):
    assert user.api.post("/category", json={"name": "dup"}).status_code == 201
    resp = user.api.post("/category", json={"name": "dup"})
    assert_problem(resp, 409)
    assert user.api.get("/category").json()["count"] == 1


def test_create_referencing_unreadable_record_returns_404_naming_field(user, other_user):
    theirs = new_list(other_user.api)
    resp = user.api.post("/message", json={"list_id": theirs["id"], "subject": "hi"})
    assert_problem(resp, 404, "list_id")
    in_theirs = other_user.api.get("/message", params={
        "filter": f'{{"list_id": "{theirs["id"]}"}}'}).json()
    assert in_theirs["count"] == 0
    resp = user.api.post("/message", json={"list_id": "x-doesnotexist00", "subject": "hi"})
    assert_problem(resp, 404, "list_id")


def test_create_enum_violation_returns_400(user):
    resp = user.api.post("/list", json={"name": "l", "privacy": "everyone"})
    assert_problem(resp, 400, "privacy")


# -- read -----------------------------------------------------------------------------

def test_get_returns_record_rbac_and_etag(user):
    created = new_list(user.api, description="weekly")
    resp = user.api.get(f"/list/{created['id']}")
    assert resp.status_code == 200
    assert resp.headers["ETag"].startswith('"')
    body = resp.json()
    assert body["description"] == "weekly" and body["rbac"] == "cdghijlru"


def test_get_unknown_id_returns_404(user):
    assert_problem(user.api.get("/list/x-nosuchrecord0"), 404)


def test_get_bad_id_returns_400(user):
    assert_problem(user.api.get("/list/" + "a" * 41), 400, "id")


def test_anonymous_gets_401_with_www_authenticate(server, user):
    created = new_list(user.api)
    anon = server.anonymous()
    for resp in (anon.get("/list"), anon.get(f"/list/{created['id']}"),
                 anon.post("/list", json={"name": "x"}),
                 anon.put(f"/list/{created['id']}", json={"name": "y"}),
                 anon.delete(f"/list/{created['id']}")):
        assert_problem(resp, 401)
        assert resp.headers["WWW-Authenticate"]
    assert user.api.get(f"/list/{created['id']}").json()["name"] == created["name"]


def test_invalid_token_gets_401(server):
    from helpers import Api

    api = Api(server.url, token="not-a-real-token")
    assert_problem(api.get("/list"), 401)


def test_unknown_url_and_method_are_problems(user):
    assert_problem(user.api.get("/nothing-here"), 404)
    assert_problem(user.api.post("/list/x-whatever0000"), 405)


# -- update ---------------------------------------------------------------------------

def test_update_put_and_patch_return_full_record(user):
    created = new_list(user.api, description="a")
    resp = user.api.put(f"/list/{created['id']}", json={"description": "b"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["description"] == "b" and body["name"] == created["name"]
    assert body["modified"] is not None and body["id"] == created["id"]
    resp = user.api.patch(f"/list/{created['id']}", json={"privacy": "member"})
    assert resp.status_code == 200 and resp.json()["privacy"] == "member"
    assert resp.json()["description"] == "b"


def test_update_whole_record_echoed_back_is_accepted(user):
    """react-admin sends back what it read, read-only and computed fields included."""
    created = new_list(user.api)
    record = user.api.get(f"/list/{created['id']}").json()
    record["description"] = "edited in the UI"
    resp = user.api.put(f"/list/{created['id']}", json=record)
    assert resp.status_code == 200, resp.text
    assert resp.json()["description"] == "edited in the UI"


@pytest.mark.parametrize("field,value", [("id", "x-other0000000"), ("created",
                                                                   "2001-01-01T00:00:00Z")])
def test_update_changing_read_only_field_returns_400(user, field, value):
    created = new_list(user.api)
    resp = user.api.put(f"/list/{created['id']}", json={field: value, "description": "z"})
    assert_problem(resp, 400, field)
    assert user.api.get(f"/list/{created['id']}").json()["description"] is None


def test_update_stale_if_match_returns_412_and_changes_nothing(user):
    created = new_list(user.api, description="v1")
    etag = user.api.get(f"/list/{created['id']}").headers["ETag"]
    ok = user.api.put(f"/list/{created['id']}", json={"description": "v2"},
                      headers={"If-Match": etag})
    assert ok.status_code == 200
    assert ok.headers["ETag"] != etag
    stale = user.api.put(f"/list/{created['id']}", json={"description": "v3"},
                         headers={"If-Match": etag})
    assert_problem(stale, 412)
    assert user.api.get(f"/list/{created['id']}").json()["description"] == "v2"
    assert_problem(user.api.delete(f"/list/{created['id']}", headers={"If-Match": etag}), 412)
    assert user.api.get(f"/list/{created['id']}").status_code == 200


def test_update_unique_conflict_returns_409_and_changes_nothing(user):
    new_list(user.api, name="one")
    two = new_list(user.api, name="two")
    assert_problem(user.api.put(f"/list/{two['id']}", json={"name": "one"}), 409)
    assert user.api.get(f"/list/{two['id']}").json()["name"] == "two"


def test_update_invalid_values_return_400(user):
    created = new_list(user.api)
    assert_problem(user.api.patch(f"/list/{created['id']}", json={"name": None}), 400, "name")
    assert_problem(user.api.patch(f"/list/{created['id']}", json={"bogus": 1}), 400, "bogus")


def test_update_moving_to_another_owner_is_forbidden(user, other_user):
    created = new_list(user.api)
    resp = user.api.put(f"/list/{created['id']}", json={"uid": other_user.uid})
    assert_problem(resp, 404, "uid")
    assert user.api.get(f"/list/{created['id']}").json()["uid"] == user.uid


# -- delete ---------------------------------------------------------------------------

def test_delete_moves_to_trash_and_hides_record(user):
    created = new_list(user.api)
    resp = user.api.delete(f"/list/{created['id']}")
    assert resp.status_code == 200
    assert resp.json()["id"] == created["id"] and resp.json()["status"] == "disabled"
    assert_problem(user.api.get(f"/list/{created['id']}"), 404)
    assert user.api.get("/list", params={"filter": f'{{"uid": "{user.uid}"}}'}) \
        .json()["count"] == 0
    assert_problem(user.api.delete(f"/list/{created['id']}"), 404)


def test_delete_several_ids_returns_array(user):
    ids = [new_list(user.api, name=f"n{i}")["id"] for i in range(3)]
    resp = user.api.delete("/list/" + ",".join(ids))
    assert resp.status_code == 200
    assert sorted(r["id"] for r in resp.json()) == sorted(ids)
    assert user.api.get("/list", params={"filter": f'{{"uid": "{user.uid}"}}'}) \
        .json()["count"] == 0


def test_delete_several_with_one_unknown_deletes_nothing(user):
    keep = new_list(user.api)
    resp = user.api.delete(f"/list/{keep['id']},x-nosuchrecord0")
    assert_problem(resp, 404)
    assert user.api.get(f"/list/{keep['id']}").status_code == 200


# -- two users never see each other's records -------------------------------------------

def test_other_users_records_are_invisible(user, other_user):
    mine = new_list(user.api, name="private")
    rid = mine["id"]
    theirs = other_user.api.get("/list", params={"filter": '{"privacy": "secret"}'}).json()
    assert theirs == {"items": [], "count": 0}
    # ids in a filter only narrow the result: naming someone the caller cannot read
    # matches the rows of theirs the caller may read (none), never an error
    found = other_user.api.get("/list", params={"filter": f'{{"uid": "{user.uid}"}}'})
    assert found.status_code == 200 and found.json() == {"items": [], "count": 0}
    assert_problem(other_user.api.get(f"/list/{rid}"), 404)
    assert_problem(other_user.api.put(f"/list/{rid}", json={"name": "hijack"}), 404)
    assert_problem(other_user.api.patch(f"/list/{rid}", json={"name": "hijack"}), 404)
    assert_problem(other_user.api.delete(f"/list/{rid}"), 404)
    assert user.api.get(f"/list/{rid}").json()["name"] == "private"


def test_admin_sees_everyones_records(admin, user):
    created = new_list(user.api, name="visible-to-admin")
    assert admin.api.get(f"/list/{created['id']}").status_code == 200
    found = admin.api.get("/list", params={"filter": f'{{"uid": "{user.uid}"}}'}).json()
    assert found["count"] == 1


# -- person and account -----------------------------------------------------------------

def test_person_own_record_readable_and_updatable_not_creatable(user, other_user):
    me = user.api.get(f"/person/{user.uid}")
    assert me.status_code == 200 and me.json()["rbac"] == "lru"
    assert user.api.patch(f"/person/{user.uid}", json={"name": "Renamed"}).json()["name"] \
        == "Renamed"
    assert_problem(user.api.post("/person", json={"name": "someone"}), 403)
    assert_problem(user.api.get(f"/person/{other_user.uid}"), 404)
    assert_problem(user.api.delete(f"/person/{user.uid}"), 403)


def test_person_duplicate_identity_returns_409(admin):
    first = admin.api.post("/person", json={"name": "A", "identity": "same@example.org"})
    assert first.status_code == 201, first.text
    assert_problem(admin.api.post("/person", json={"name": "B",
                                                   "identity": "same@example.org"}), 409)


def test_account_exposes_no_password(user):
    resp = user.api.get(f"/account/{user.account_id}")
    assert resp.status_code == 200
    assert "password" not in resp.json() and resp.json()["name"] == user.username
    found = user.api.get("/account").json()
    assert found["count"] == 1 and "password" not in found["items"][0]


# -- the served spec ----------------------------------------------------------------------

def test_openapi_document_and_ui_are_served(server):
    anon = server.anonymous()
    spec = anon.get("/openapi.json")
    assert spec.status_code == 200 and spec.json()["openapi"].startswith("3.1")
    assert "/list/{id}" in spec.json()["paths"]
    # the Swagger UI page: swagger-ui 5 (reads 3.1), no inline script, a strict CSP
    ui = anon.get("/ui/")
    assert ui.status_code == 200 and ui.headers["Content-Type"].startswith("text/html")
    csp = ui.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert ui.headers["X-Content-Type-Options"] == "nosniff"
    assert ui.headers["Cache-Control"] == "no-cache"
    base = server.settings.base_url
    assert f'data-spec-url="{base}/openapi.json"' in ui.text
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", ui.text, re.S)
    assert len(scripts) == 2 and all(src.strip().startswith("src=") and not body.strip()
                                     for src, body in scripts)  # no inline script
    # each file the page names is served, cached for good under the URL the page uses
    for url in re.findall(r'(?:src|href)="([^"]+)"', ui.text):
        assert url.startswith(base + "/ui/") and "?v=" in url, url
        resp = anon.get(url[len(base):])
        assert resp.status_code == 200, url
        assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    bundle = anon.get("/ui/swagger-ui-bundle.js")  # no hash: revalidated, not cached
    assert bundle.status_code == 200 and bundle.headers["Cache-Control"] == "no-cache"
    assert bundle.headers["Content-Type"].startswith("text/javascript")
    assert re.search(r'PACKAGE_VERSION:"5\.\d+\.\d+"', bundle.text)  # swagger-ui 5.x
    # only the page's files: not the rest of the package
    for name in ("__init__.py", "VERSION", "LICENSE", "vendor/LICENSE", "nope.js"):
        assert anon.get("/ui/" + name).status_code == 404, name


# -- a custom controller overrides one step -----------------------------------------------

def test_custom_controller_validates_contact_info_by_type(user):
    ok = user.api.post("/contact", json={"info": "me@example.com", "type": "email"})
    assert ok.status_code == 201, ok.text
    assert_problem(user.api.post("/contact", json={"info": "not-an-address", "type": "email"}),
                   400, "info")
    assert_problem(user.api.post("/contact", json={"info": "call me", "type": "sms"}),
                   400, "info")
    assert user.api.post("/contact", json={"info": "+1 555 0100", "type": "sms"}) \
        .status_code == 201
    assert_problem(user.api.patch(f"/contact/{ok.json()['id']}", json={"type": "sms"}),
                   400, "info")
    # everything else is BasicCRUD's: ownership, listing, delete
    assert user.api.get("/contact", params={"filter": f'{{"uid": "{user.uid}"}}'}) \
        .json()["count"] == 2
    assert user.api.delete(f"/contact/{ok.json()['id']}").status_code == 200


def test_deleted_name_can_be_used_again(user):
    first = new_list(user.api, name="reused")
    assert user.api.delete(f"/list/{first['id']}").status_code == 200
    again = user.api.post("/list", json={"name": "reused"})
    assert again.status_code == 201, again.text
    assert user.api.delete(f"/list/{again.json()['id']}").status_code == 200
    assert user.api.post("/list", json={"name": "reused"}).status_code == 201


@pytest.mark.parametrize("payload", [
    b'{"name": "a\\u0000b"}',
    b'{"name": "\\ud800"}',
    b'{"name": ' + b'[' * 5000 + b']' * 5000 + b'}',
])
def test_create_unstorable_or_absurd_body_is_400(user, payload):
    resp = user.api.post("/category", data=payload, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert resp.headers["Content-Type"].startswith(PROBLEM)
    assert user.api.get("/category").json()["count"] == 0


def test_a_failing_after_commit_step_leaves_the_committed_answer(server, user, caplog):
    """Once the transaction commits, the write stands: a follow-up that fails (a cache
    drop while Redis is away) is logged, and the client still gets its 201."""
    def boom():
        raise ConnectionError("cache unreachable (test)")

    def add_failing_step(ctx, res, data):
        if res.name == "category":
            ctx.after_commit.append(boom)

    checks = server.services.pipeline.create_checks
    checks.append(add_failing_step)
    try:
        with caplog.at_level("ERROR", logger="apicrud.context"):
            resp = user.api.post("/category", json={"name": "after-commit-fails"})
    finally:
        checks.remove(add_failing_step)
    assert resp.status_code == 201, resp.text
    assert user.api.get(f"/category/{resp.json()['id']}").status_code == 200
    assert any(r.message.startswith("after-commit step failed") for r in caplog.records)
