"""``GET /config``: every setting for administrators, secrets masked."""

from __future__ import annotations

import json

from apicrud.config.loader import MASK
from helpers import assert_problem


def test_config_lists_every_setting_for_admins(server, admin):
    resp = admin.api.get("/config")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.json()
    assert body["schema_version"] == server.settings.schema_version
    settings = server.settings
    assert set(body["settings"]) == set(settings)
    plain = {k: v for k, v in settings.as_dict(redact=False).items() if not settings.is_secret(k)}
    assert {k: v for k, v in body["settings"].items() if k in plain} == \
        json.loads(json.dumps(plain))
    assert body["settings"]["per_page_max"] == settings.per_page_max
    assert body["settings"]["ratelimit_interval"] == settings.ratelimit_interval


def test_config_masks_secrets(server, admin):
    body = admin.api.get("/config").json()["settings"]
    settings = server.settings
    secrets = [k for k in settings if settings.is_secret(k)]
    assert "secret_key" in secrets and "database_url" in secrets and "redis_url" in secrets
    assert body["secret_key"] == MASK
    assert settings.secret_key not in admin.api.get("/config").text
    for key in secrets:
        # a set secret is masked; an unset one shows as unset and reveals nothing
        assert body[key] == (MASK if settings[key] not in ("", None) else settings[key]), key


def test_config_is_for_admins_only(server, user):
    assert_problem(user.api.get("/config"), 403)
    assert_problem(server.anonymous().get("/config"), 401)
