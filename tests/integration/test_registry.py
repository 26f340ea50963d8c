"""ServiceRegistry: running instances announce themselves in the real Redis."""

from __future__ import annotations

import secrets
import time

import pytest
import requests

from apicrud.registry import INDEX_KEY, KEY_PREFIX, ServiceRegistry
from instances import start_instance

TTL = 2


@pytest.fixture
def service_name() -> str:
    """A service name of this test's own, so instances of other tests stay out of view."""
    return "test-" + secrets.token_hex(4)


def _instance(server, name: str, instance_id: str, **changes):
    return start_instance(server.settings, redis_url=server.services.redis.url,
                          service_name=name, instance_id=instance_id, registry_ttl=TTL,
                          public_url=f"https://{instance_id}.example.org", **changes)


def _ids(registry: ServiceRegistry, name: str) -> list[str]:
    return sorted(i["id"] for i in registry.find(name)["instances"])


def test_registry_lists_two_running_instances(server, service_name):
    a = _instance(server, service_name, "a")
    b = _instance(server, service_name, "b")
    try:
        found = a.services.registry.find(service_name)
        assert sorted(i["id"] for i in found["instances"]) == ["a", "b"]
        entry = next(i for i in found["instances"] if i["id"] == "b")
        assert entry["name"] == service_name
        assert entry["port"] == server.settings.port
        assert entry["public_url"] == "https://b.example.org"
        assert {"list", "person", "auth", "health", "config"} <= set(entry["endpoints"])
        # every resource maps to a public URL; the longest-running instance comes first
        assert found["url_map"]["list"] == "https://a.example.org/api/v1"
        assert set(found["url_map"]) == set(entry["endpoints"])
        assert _ids(b.services.registry, service_name) == ["a", "b"]
    finally:
        a.stop()
        b.stop()


def test_registry_keeps_entries_alive_past_their_ttl(server, service_name):
    a = _instance(server, service_name, "a")
    try:
        time.sleep(TTL * 1.5)  # refreshed every TTL/3, so never expired
        assert _ids(a.services.registry, service_name) == ["a"]
    finally:
        a.stop()


def test_registry_forgets_an_instance_that_died_after_its_ttl(server, service_name):
    a = _instance(server, service_name, "a")
    b = _instance(server, service_name, "b")
    try:
        assert _ids(a.services.registry, service_name) == ["a", "b"]
        b.services.registry.stop(deregister=False)  # as if its process were killed
        b.stop()
        assert _ids(a.services.registry, service_name) == ["a", "b"]  # not yet
        time.sleep(TTL + 0.5)
        assert _ids(a.services.registry, service_name) == ["a"]
        client = server.services.redis.client
        assert client.zscore(INDEX_KEY, f"{KEY_PREFIX}{service_name}:b") is None  # pruned
    finally:
        a.stop()
        b.stop()


def test_registry_removes_a_cleanly_stopped_instance_at_once(server, service_name):
    a = _instance(server, service_name, "a")
    b = _instance(server, service_name, "b")
    try:
        b.stop()
        assert _ids(a.services.registry, service_name) == ["a"]
        assert not b.services.registry.running
    finally:
        a.stop()


def test_registry_entries_are_encrypted(server, service_name):
    a = _instance(server, service_name, "a")
    try:
        raw = server.services.redis.client.get(f"{KEY_PREFIX}{service_name}:a")
        assert raw and b"example.org" not in raw and b"endpoints" not in raw
        # a deployment with another secret shares the Redis but cannot read (or list) ours
        stranger = ServiceRegistry(server.services.redis.client, "another-secret-0123456",
                                   a.services.registry.instance, ttl=TTL)
        assert stranger.find(service_name)["instances"] == []
    finally:
        a.stop()


def test_login_identity_lists_resource_urls(server, service_name, user):
    a = _instance(server, service_name, "a")
    try:
        me = user.api.http.get(a.url + "/auth", timeout=10)
        assert me.status_code == 200
        resources = me.json()["resources"]
        assert resources["list"] == "https://a.example.org/api/v1"
        assert resources["health"] == "https://a.example.org/api/v1"
    finally:
        a.stop()


def test_registry_can_be_disabled(server, service_name, user):
    a = _instance(server, service_name, "a", registry_enable=False)
    try:
        assert a.services.registry is None
        resp = requests.get(a.url + "/health", timeout=10)
        assert resp.status_code == 200
        me = user.api.http.get(a.url + "/auth", timeout=10).json()
        assert "resources" not in me
        assert ServiceRegistry(server.services.redis.client, server.settings.secret_key,
                               server.services.registry.instance).find(service_name) == \
            {"instances": [], "url_map": {}}
    finally:
        a.stop()
