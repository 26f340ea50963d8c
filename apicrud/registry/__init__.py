"""ServiceRegistry: instances announce themselves in Redis; clients find them there.

Each instance writes one entry, ``apicrud:registry:<service name>:<instance id>``,
holding its endpoints (top-level resources), address, port, public URL and start
time, encrypted with AES-GCM under the ``registry`` key context (a foreign or forged
entry fails authentication and is skipped, so two deployments can even share a Redis).
The entry has a TTL (setting ``registry_ttl``) and a background thread rewrites it every
third of that, so an instance that dies disappears within one TTL, and one that stops
cleanly removes its entry at once.

A sorted set, ``apicrud:registry``, indexes the entry keys, so :meth:`find` reads only
the registry's own keys and never scans the keyspace (sessions and counters may number
millions). Only the entry keys' TTLs (Redis's clock) decide who is alive; :meth:`find`
prunes index members whose entry has expired.

The default instance id is ``<hostname>:<port>``: the worker processes of one server
share one entry (they announce the same thing), while two servers never collide.
"""

from __future__ import annotations

import atexit
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from apicrud import redis_keys
from apicrud.crypto import AESEncrypt, DecryptError

log = logging.getLogger("apicrud.registry")

KEY_PREFIX = redis_keys.prefix("registry")
INDEX_KEY = redis_keys.key("registry")

__all__ = ["Instance", "ServiceRegistry", "init_app"]


@dataclass
class Instance:
    """What one instance announces about itself."""

    name: str
    id: str
    endpoints: list[str]
    address: str | None
    port: int
    public_url: str
    base_url: str
    started: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.id, "endpoints": self.endpoints,
                "address": self.address, "port": self.port, "public_url": self.public_url,
                "base_url": self.base_url, "started": int(self.started)}


class ServiceRegistry:
    """Registers this instance in Redis and finds the others.

    :param client: the shared Redis client
    :param secret: the secret the entries are encrypted with (setting ``secret_key``)
    :param instance: what to announce
    :param ttl: seconds an entry lives without being refreshed
    """

    def __init__(self, client: redis.Redis, secret: str, instance: Instance,
                 ttl: int = 30) -> None:
        self.client = client
        self.instance = instance
        self.ttl = max(int(ttl), 1)
        self.interval = max(self.ttl / 3, 0.2)
        self._aes = AESEncrypt(secret, context="registry")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._failing = False

    @property
    def key(self) -> str:
        return f"{KEY_PREFIX}{self.instance.name}:{self.instance.id}"

    # -- announcing ---------------------------------------------------------------------

    def register(self) -> None:
        """Write (or refresh) this instance's entry now.

        :raises redis.exceptions.RedisError: Redis is unreachable
        """
        blob = self._aes.encrypt(json.dumps(self.instance.to_dict()))
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.key, blob, ex=self.ttl)
        pipe.zadd(INDEX_KEY, {self.key: time.time() + self.ttl})
        # the index outlives every entry it names, and goes once they all have
        pipe.expire(INDEX_KEY, self.ttl * 2)
        pipe.execute()

    def deregister(self) -> None:
        """Remove this instance's entry (a clean stop); Redis errors are logged."""
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(self.key)
            pipe.zrem(INDEX_KEY, self.key)
            pipe.execute()
        except redis.exceptions.RedisError as exc:
            log.warning("registry: could not remove %s: %s", self.key, exc)

    def start(self) -> None:
        """Register now (if Redis answers) and keep the entry fresh in a daemon thread."""
        with self._lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._refresh()
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"registry-{self.instance.id}")
            self._thread.start()
        atexit.register(self.stop)

    def stop(self, deregister: bool = True) -> None:
        """Stop refreshing; remove the entry unless ``deregister`` is false (as in a crash).

        Idempotent, and safe to call from ``atexit``.
        """
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout=5)
        atexit.unregister(self.stop)
        if deregister:
            self.deregister()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._refresh()

    def _refresh(self) -> None:
        try:
            self.register()
        except redis.exceptions.RedisError as exc:
            if not self._failing:  # log the change of state, not every retry
                log.error("registry: cannot register %s: %s", self.key, exc)
            self._failing = True
            return
        if self._failing:
            log.info("registry: registered %s again", self.key)
        self._failing = False

    # -- finding ------------------------------------------------------------------------

    def find(self, service_name: str | None = None) -> dict[str, Any]:
        """Live instances (of one service, or all) and the public URL of each resource.

        :returns: ``{"instances": [entry, ...], "url_map": {resource: url}}``; when
            instances disagree on a resource's URL, the longest-running one wins
        :raises redis.exceptions.RedisError: Redis is unreachable
        """
        keys: list[str] = [k.decode() if isinstance(k, bytes) else str(k)
                           for k in self.client.zrange(INDEX_KEY, 0, -1)]
        if service_name is not None:
            keys = [k for k in keys if k.startswith(f"{KEY_PREFIX}{service_name}:")]
        instances: list[dict[str, Any]] = []
        gone: list[str] = []
        for key, blob in zip(keys, self.client.mget(keys) if keys else [], strict=True):
            if blob is None:
                gone.append(key)
                continue
            try:
                info = json.loads(self._aes.decrypt(
                    blob if isinstance(blob, bytes) else blob.encode()))
            except (DecryptError, ValueError):
                # another deployment (another secret) sharing this Redis: not ours to read
                continue
            instances.append(info)
        if gone:  # their TTL ran out: the instance stopped refreshing
            self.client.zrem(INDEX_KEY, *gone)
        instances.sort(key=lambda i: (i.get("started", 0), i.get("id", "")))
        url_map: dict[str, str] = {}
        for info in instances:
            url = info.get("public_url", "").rstrip("/") + info.get("base_url", "")
            for resource in info.get("endpoints") or ():
                url_map.setdefault(resource, url)
        # instances without a shared public_url each announce their own address: normal,
        # so not worth a warning on every GET /auth
        return {"instances": instances, "url_map": url_map}

    def url_map(self) -> dict[str, str]:
        """Resource -> public URL from the live instances; this instance's own map when
        Redis cannot be read (the caller still gets something usable)."""
        try:
            found = self.find(self.instance.name)["url_map"]
        except redis.exceptions.RedisError as exc:
            log.warning("registry: cannot read instances: %s", exc)
            found = {}
        if not found:
            own = self.instance.public_url.rstrip("/") + self.instance.base_url
            found = dict.fromkeys(self.instance.endpoints, own)
        return found


def _address(host: str) -> str | None:
    # an instance bound to a wildcard address registers its host's address instead
    if host not in ("", "0.0.0.0", "::"):  # nosec B104 # compares; binds nothing
        return host
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return None


def describe_instance(services: Any) -> Instance:
    """This instance, from settings and the spec's top-level paths."""
    settings = services.settings
    endpoints = sorted({op.path.strip("/").split("/")[0]
                        for op in services.decl.operations if op.path.strip("/")})
    address = _address(settings.host)
    public_url = settings.public_url or f"http://{address or settings.host}:{settings.port}"
    instance_id = settings.instance_id or f"{socket.gethostname()}:{settings.port}"
    return Instance(name=settings.service_name, id=instance_id, endpoints=endpoints,
                    address=address, port=settings.port, public_url=public_url.rstrip("/"),
                    base_url=services.base_url)


def init_app(services: Any) -> None:
    """Start announcing this instance (setting ``registry_enable``); ``services.registry``."""
    settings = services.settings
    services.registry = None
    if not settings.registry_enable:
        return
    registry = ServiceRegistry(services.redis.client, settings.secret_key,
                               describe_instance(services), ttl=settings.registry_ttl)
    registry.start()
    services.registry = registry
