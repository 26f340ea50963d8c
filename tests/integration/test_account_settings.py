"""Per-account settings: created on first read, cached in Redis, uncached on update."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import update

from apicrud.auth.account_settings import AccountSettings
from helpers import assert_problem


def my_settings(user) -> dict:
    resp = user.api.get("/settings")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["count"] == 1, body
    return body["items"][0]


def test_first_read_creates_the_record_with_defaults(server, user):
    record = my_settings(user)
    assert record["account_id"] == user.account_id and record["uid"] == user.uid
    assert record["locale"] == "en_US" and record["timezone"] == "UTC"
    assert record["default_privacy"] == "member" and record["default_category_id"] is None
    assert record["rbac"] == "lru"
    assert my_settings(user)["id"] == record["id"]  # not created twice
    one = user.api.get(f"/settings/{record['id']}")
    assert one.status_code == 200 and "ETag" in one.headers


def test_reads_go_through_the_redis_cache(server, user):
    services = server.services
    cached = AccountSettings(user.account_id, services)
    assert cached.timezone == "UTC"  # creates the record on first read
    redis = services.redis.client
    assert 0 < redis.ttl(cached.key) <= server.settings.account_settings_ttl
    assert json.loads(redis.get(cached.key))["account_id"] == user.account_id
    # a change behind the cache's back is not seen until uncache()
    model = services.models.Settings
    with services.db.session() as db, db.begin():
        db.execute(update(model).where(model.account_id == user.account_id)
                   .values(locale="fr_FR"))
    assert AccountSettings(user.account_id, services).locale == "en_US"
    cached.uncache()
    assert redis.get(cached.key) is None
    assert AccountSettings(user.account_id, services).locale == "fr_FR"


def test_update_is_seen_at_once_through_the_cache(server, user):
    record = my_settings(user)
    assert AccountSettings(user.account_id, server.services).timezone == "UTC"
    resp = user.api.patch(f"/settings/{record['id']}",
                          json={"timezone": "Europe/Zurich", "locale": "de_CH"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["timezone"] == "Europe/Zurich"
    fresh = AccountSettings(user.account_id, server.services)
    assert (fresh.timezone, fresh.locale) == ("Europe/Zurich", "de_CH")


def test_bad_values_are_400(server, user):
    sid = my_settings(user)["id"]
    assert_problem(user.api.patch(f"/settings/{sid}", json={"timezone": "Mars/Olympus"}),
                   400, "timezone")
    assert_problem(user.api.patch(f"/settings/{sid}", json={"timezone": "../../etc/passwd"}),
                   400, "timezone")
    assert_problem(user.api.patch(f"/settings/{sid}", json={"locale": "English!"}), 400,
                   "locale")
    assert_problem(user.api.patch(f"/settings/{sid}", json={"default_privacy": "open"}), 400,
                   "default_privacy")
    assert_problem(user.api.patch(f"/settings/{sid}", json={"account_id": "x-other"}), 400,
                   "account_id")
    assert_problem(user.api.patch(f"/settings/{sid}", json={"uid": "x-other"}), 400, "uid")


def test_default_category_must_be_readable(server, user, other_user):
    sid = my_settings(user)["id"]
    theirs = other_user.api.post("/category", json={"name": "theirs"}).json()["id"]
    assert_problem(user.api.patch(f"/settings/{sid}", json={"default_category_id": theirs}),
                   404, "default_category_id")
    mine = user.api.post("/category", json={"name": "mine"}).json()["id"]
    ok = user.api.patch(f"/settings/{sid}", json={"default_category_id": mine})
    assert ok.status_code == 200 and ok.json()["default_category_id"] == mine
    assert AccountSettings(user.account_id, server.services).default_category_id == mine


def test_owner_and_admin_only(server, admin, user, other_user):
    sid = my_settings(user)["id"]
    assert_problem(other_user.api.get(f"/settings/{sid}"), 404)
    assert_problem(other_user.api.patch(f"/settings/{sid}", json={"locale": "it_IT"}), 404)
    assert [s["account_id"] for s in other_user.api.get("/settings").json()["items"]] == \
        [other_user.account_id]
    assert admin.api.get(f"/settings/{sid}").status_code == 200
    assert admin.api.patch(f"/settings/{sid}", json={"locale": "it_IT"}).status_code == 200
    assert AccountSettings(user.account_id, server.services).locale == "it_IT"
    assert admin.api.get("/settings").json()["count"] >= 2


def test_no_create_or_delete(server, user):
    sid = my_settings(user)["id"]
    assert_problem(user.api.post("/settings", json={"locale": "en_GB"}), 405)
    assert_problem(user.api.delete(f"/settings/{sid}"), 405)


def test_unknown_account_is_a_lookup_error(server):
    with pytest.raises(LookupError):
        AccountSettings("x-no-such-account", server.services).get()
