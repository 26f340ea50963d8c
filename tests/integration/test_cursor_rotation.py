"""Paging cursors survive a key rotation: a cursor signed with the previous secret_key is
still accepted while that key is listed in secret_key_fallbacks, and refused once it is
not (tokens of an unknown key are forged ones)."""

from __future__ import annotations

import secrets

import pytest

from instances import login, new_account, start_instance

OLD, NEW = "old-key-" + secrets.token_hex(12), "new-key-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def instances(server):
    started = {}
    try:
        for name, key, fallbacks in (("old", OLD, []), ("rotated", NEW, [OLD]),
                                     ("new", NEW, [])):
            started[name] = start_instance(server.settings, redis_url=server.services.redis.url,
                                           secret_key=key, secret_key_fallbacks=fallbacks)
        yield started
    finally:
        for inst in started.values():
            inst.stop()


def test_a_cursor_outlives_the_key_while_it_is_a_fallback(instances):
    old = instances["old"]
    username, password, _ = new_account(old.services)
    first = login(old.url, username, password)
    for _ in range(3):
        assert first.post(old.url + "/category", json={"name": f"rot-{secrets.token_hex(4)}"},
                          timeout=10).status_code == 201
    page = first.get(old.url + "/category", params={"limit": 1}, timeout=10).json()
    cursor = page["cursor_next"]
    assert cursor
    for name, status in (("rotated", 200), ("new", 400)):
        inst = instances[name]
        http = login(inst.url, username, password)
        resp = http.get(inst.url + "/category", params={"cursor_next": cursor}, timeout=10)
        assert resp.status_code == status, (name, resp.text)
        if status == 400:
            assert "cursor_next" in resp.json()["errors"]
    # what the rotated instance hands out is signed with the new key
    rotated = instances["rotated"]
    http = login(rotated.url, username, password)
    fresh = http.get(rotated.url + "/category", params={"limit": 1}, timeout=10).json()
    new = instances["new"]
    again = login(new.url, username, password).get(
        new.url + "/category", params={"cursor_next": fresh["cursor_next"]}, timeout=10)
    assert again.status_code == 200, again.text


def test_the_fallback_keys_are_masked_in_the_config_dump(instances):
    settings = instances["rotated"].services.settings
    assert OLD not in str(settings.as_dict(redact=True))
