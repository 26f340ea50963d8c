"""Kept exact counts never show what the caller may not count, nor an old number.

The default application keeps message counts in Redis (``count_cache`` in
x-apicrud-resources; apicrud.db.countcache). The oracle of every count here is the
caller's own walk through every page with ``count=none`` (no count asked, so nothing
kept is read): a kept count must equal it, for every caller, right after every kind of
write that changes what the caller may see (a create, a privacy change, a trash, a
restore, a batch, a membership granted or taken back), and a write that is rolled back
must leave it alone. Nothing here restates the policy.
"""

from __future__ import annotations

import json

import pytest
import redis as redis_lib
from sqlalchemy import Column, MetaData, String, Table, create_engine, event, func, insert, select
from sqlalchemy import text as sql_text

from apicrud.db.countcache import CountCache, statement_tables
from helpers import make_user

PRIVACY = ("public", "invitee", "member", "manager", "secret")


def walked(api, flt: str) -> int:
    """How many messages the caller finds, page by page, asking no count."""
    n, params = 0, {"limit": 3, "count": "none", "filter": flt}
    for _ in range(200):
        resp = api.get("/message", params=params)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert "count" not in body
        n += len(body["items"])
        if not body.get("cursor_next"):
            return n
        params = {"cursor_next": body["cursor_next"], "count": "none"}
    raise AssertionError("the cursor never ended")


def counted(api, flt: str, **headers) -> int:
    resp = api.get("/message", params={"limit": 1, "filter": flt}, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["X-Total-Count"] == str(resp.json()["count"])
    return resp.json()["count"]


def assert_count_is_walk(api, flt: str) -> int:
    first, second = counted(api, flt), counted(api, flt)  # the second one is kept
    n = walked(api, flt)
    assert first == second == n
    return n


@pytest.fixture
def scene(server):
    """alice's list with bob as manager, carol as member, erin as invitee; dave holds
    nothing; messages of every privacy by alice, one of bob's own; and dave's list."""
    people = {name: make_user(server, prefix=name[:3]) for name in
              ("alice", "bob", "carol", "dave", "erin")}
    alice = people["alice"].api
    lst = alice.post("/list", json={"name": "counted", "privacy": "invitee"}).json()
    roles = {}
    for who, level in (("bob", "manager"), ("carol", "member"), ("erin", "invitee")):
        resp = alice.post("/listmember", json={"list_id": lst["id"],
                                               "uid": people[who].uid, "authorization": level})
        assert resp.status_code == 201, resp.text
        roles[who] = resp.json()["id"]
    messages = {}
    for privacy in PRIVACY:
        resp = alice.post("/message", json={"list_id": lst["id"], "subject": privacy,
                                            "privacy": privacy})
        assert resp.status_code == 201, resp.text
        messages[privacy] = resp.json()
    resp = people["bob"].api.post("/message", json={"list_id": lst["id"], "subject": "bob's",
                                                    "privacy": "secret"})
    assert resp.status_code == 201, resp.text
    other = people["dave"].api.post("/list", json={"name": "dave's", "privacy": "public"})
    for privacy in ("public", "member"):
        resp = people["dave"].api.post("/message", json={
            "list_id": other.json()["id"], "subject": privacy, "privacy": privacy})
        assert resp.status_code == 201, resp.text
    flt = json.dumps({"list_id": [lst["id"], other.json()["id"]]})
    return {"people": people, "list": lst, "roles": roles, "messages": messages,
            "filter": flt}


def test_the_default_application_keeps_message_counts(server, scene):
    """The premise of this file: the second count is the kept one, not a recount."""
    services = server.services
    assert services.counts is not None and services.resources["message"].count_cache > 0
    api, flt = scene["people"]["carol"].api, scene["filter"]
    counted(api, flt)
    queries = []
    engine = services.db.engine

    def seen(_c, _cur, statement, *_a):
        if "count(" in statement.lower():
            queries.append(statement)
    event.listen(engine, "before_cursor_execute", seen)
    try:
        counted(api, flt)
        assert queries == []  # answered from Redis
        counted(api, flt, **{"Cache-Control": "no-cache"})
        assert len(queries) == 1  # a client asking for a fresh count gets one
    finally:
        event.remove(engine, "before_cursor_execute", seen)


def test_each_caller_counts_only_what_it_may_read(scene):
    """Callers holding the list differently ask in turn, twice each: no caller gets the
    number another was given (each equals its own walk), and they differ."""
    flt = scene["filter"]
    numbers = {who: assert_count_is_walk(user.api, flt)
               for who, user in scene["people"].items()}
    numbers_again = {who: counted(user.api, flt) for who, user in scene["people"].items()}
    assert numbers == numbers_again
    assert len(set(numbers.values())) >= 3, numbers


def test_a_membership_granted_or_taken_back_shows_in_the_next_count(scene):
    people, flt = scene["people"], scene["filter"]
    dave, alice = people["dave"].api, people["alice"].api
    before = assert_count_is_walk(dave, flt)
    resp = alice.post("/listmember", json={"list_id": scene["list"]["id"],
                                           "uid": people["dave"].uid,
                                           "authorization": "member"})
    assert resp.status_code == 201, resp.text
    granted = counted(dave, flt)
    assert granted == walked(dave, flt) > before
    # carol loses her membership: what only members may read leaves her count at once
    carol_before = assert_count_is_walk(people["carol"].api, flt)
    assert alice.delete(f"/listmember/{scene['roles']['carol']}").status_code == 200
    carol_after = counted(people["carol"].api, flt)
    assert carol_after == walked(people["carol"].api, flt) < carol_before
    # dave raised to manager sees the manager's messages at once
    resp = alice.patch(f"/listmember/{resp.json()['id']}", json={"authorization": "manager"})
    assert resp.status_code == 200, resp.text
    assert counted(dave, flt) == walked(dave, flt) > granted


def test_every_kind_of_write_shows_in_the_next_count_of_every_caller(scene):
    people, flt = scene["people"], scene["filter"]
    alice, erin = people["alice"].api, people["erin"].api
    watchers = [people[w].api for w in ("alice", "bob", "erin", "dave")]

    def all_match() -> list[int]:
        return [counted(api, flt) for api in watchers]

    def check(before: list[int]) -> list[int]:
        after = all_match()
        assert after == [walked(api, flt) for api in watchers]
        assert after != before  # (each step below changes somebody's number)
        return after

    numbers = [assert_count_is_walk(api, flt) for api in watchers]
    # a create
    resp = alice.post("/message", json={"list_id": scene["list"]["id"], "subject": "new",
                                        "privacy": "public"})
    assert resp.status_code == 201, resp.text
    created = resp.json()
    numbers = check(numbers)
    # a privacy change: erin (invitee) loses the member-level message? no: she gains one
    member = scene["messages"]["member"]
    etag = alice.get(f"/message/{member['id']}").headers["ETag"]
    resp = alice.patch(f"/message/{member['id']}", json={"privacy": "invitee"},
                       headers={"If-Match": etag})
    assert resp.status_code == 200, resp.text
    numbers = check(numbers)
    assert counted(erin, flt) == walked(erin, flt)
    # a trash, then its restore
    assert alice.delete(f"/message/{created['id']}").status_code == 200
    numbers = check(numbers)
    resp = alice.put(f"/trashcan/message-{created['id']}", json={"status": "active"})
    assert resp.status_code == 200, resp.text
    numbers = check(numbers)
    # a batch create
    resp = alice.post("/message", json=[{"list_id": scene["list"]["id"], "subject": f"b{i}",
                                         "privacy": "public"} for i in range(3)])
    assert resp.status_code == 201, resp.text
    numbers = check(numbers)
    # a bulk trash by filter
    ids = [m["id"] for m in resp.json()["items"]]
    resp = alice.delete("/message", params={"filter": json.dumps({"id": ids})})
    assert resp.status_code == 200, resp.text
    check(numbers)


def test_a_write_that_is_rolled_back_leaves_the_count_as_it_is(scene):
    """A batch with one record the caller may not write is refused whole: the count
    (kept before it) still equals the walk after it."""
    people, flt = scene["people"], scene["filter"]
    bob = people["bob"].api
    before = assert_count_is_walk(bob, flt)
    dave_list = json.loads(flt)["list_id"][1]
    resp = bob.post("/message", json=[
        {"list_id": scene["list"]["id"], "subject": "ok", "privacy": "public"},
        {"list_id": dave_list, "subject": "not bob's to write", "privacy": "public"}])
    assert 400 <= resp.status_code < 500, resp.text
    assert counted(bob, flt) == walked(bob, flt) == before


def test_a_write_from_outside_apicrud_shows_when_asked_fresh(server, scene, settings):
    """A write that does not pass through the application's engine is the documented
    limit: the kept count stays until it expires, unless the client asks for a fresh
    one (Cache-Control: no-cache), which then is kept for everybody."""
    people, flt = scene["people"], scene["filter"]
    dave = people["dave"].api
    before = assert_count_is_walk(dave, flt)
    outside = create_engine(settings.sqlalchemy_url)
    try:
        with outside.begin() as conn:
            conn.execute(sql_text("UPDATE message SET privacy = 'public' WHERE id = :id"),
                         {"id": scene["messages"]["secret"]["id"]})
    finally:
        outside.dispose()
    assert walked(dave, flt) == before + 1
    assert counted(dave, flt) == before  # kept: nothing told apicrud
    assert counted(dave, flt, **{"Cache-Control": "no-cache"}) == before + 1
    assert counted(dave, flt) == before + 1


# -- the cache itself, on a table of its own ---------------------------------------------

@pytest.fixture
def redis_client(settings):
    from apicrud.redis_client import RedisProvider

    provider = RedisProvider(settings.redis_url, settings.path("data_dir"))
    yield provider.client
    provider.close()


def _table(engine, name: str):
    meta = MetaData()
    table = Table(name, meta, Column("id", String(32), primary_key=True),
                  Column("owner", String(32)))
    meta.drop_all(engine)
    meta.create_all(engine)
    return table


def test_two_databases_on_one_redis_share_no_count(tmp_path, redis_client):
    """The same statement with the same values on two databases is two questions."""
    engines = [create_engine(f"sqlite:///{tmp_path}/{n}.db") for n in ("one", "two")]
    try:
        caches = [CountCache(e, redis_client) for e in engines]
        tables = [_table(e, "things") for e in engines]
        for engine, table, rows in zip(engines, tables, (2, 5), strict=True):
            with engine.begin() as conn:
                conn.execute(insert(table), [{"id": f"r{i}", "owner": "me"}
                                             for i in range(rows)])
        for _ in range(2):
            for engine, cache, table, rows in zip(engines, caches, tables, (2, 5),
                                                  strict=True):
                stmt = select(func.count()).select_from(table).where(table.c.owner == "me")
                with engine.connect() as conn:
                    assert cache.count(conn, stmt, 60,
                                       lambda c=conn, s=stmt: c.execute(s).scalar_one()) \
                        == rows
    finally:
        for engine in engines:
            engine.dispose()


def test_a_kept_count_expires_and_redis_away_means_counting(tmp_path, redis_client):
    engine = create_engine(f"sqlite:///{tmp_path}/ttl.db")
    try:
        cache = CountCache(engine, redis_client)
        table = _table(engine, "things")
        stmt = select(func.count()).select_from(table)
        calls = []

        def compute(conn):
            calls.append(1)
            return conn.execute(stmt).scalar_one()
        with engine.connect() as conn:
            assert cache.count(conn, stmt, 1, lambda: compute(conn)) == 0
            assert cache.count(conn, stmt, 1, lambda: compute(conn)) == 0
            assert len(calls) == 1
        count_key = list(redis_client.keys(f"{cache._prefix}:n:*"))
        assert len(count_key) == 1 and 0 < redis_client.ttl(count_key[0]) <= 1
        away = CountCache(engine, redis_lib.Redis(host="127.0.0.1", port=1,
                                                  socket_connect_timeout=0.2))
        with engine.begin() as conn:  # its write cannot be told to Redis: logged, no error
            conn.execute(insert(table), {"id": "a", "owner": "x"})
        with engine.connect() as conn:
            assert away.count(conn, stmt, 60, lambda: compute(conn)) == 1
    finally:
        engine.dispose()


def test_a_statement_depending_on_more_than_rows_is_never_kept():
    meta = MetaData()
    table = Table("things", meta, Column("id", String(32)), Column("at", String(32)))
    assert statement_tables(select(func.count()).select_from(table)) == {"things"}
    assert statement_tables(select(func.count()).select_from(table).where(
        table.c.at < func.now())) is None
    assert statement_tables(select(func.count()).select_from(table).where(
        sql_text("at < '2026'"))) is None
    inner = Table("others", meta, Column("id", String(32)))
    assert statement_tables(select(func.count()).select_from(table).where(
        table.c.id.in_(select(inner.c.id)))) == {"things", "others"}


def test_a_count_inside_a_transaction_that_wrote_is_neither_kept_nor_used(
        tmp_path, redis_client):
    """A connection holding its own uncommitted writes counts them: that number is
    nobody else's, before or after its rollback."""
    engine = create_engine(f"sqlite:///{tmp_path}/own.db")
    try:
        cache = CountCache(engine, redis_client)
        table = _table(engine, "things")
        stmt = select(func.count()).select_from(table)
        with engine.connect() as conn:
            assert cache.count(conn, stmt, 60, lambda: conn.execute(stmt).scalar_one()) == 0
        with engine.connect() as conn:
            conn.begin()
            conn.execute(insert(table), {"id": "a", "owner": "x"})
            assert cache.count(conn, stmt, 60, lambda: conn.execute(stmt).scalar_one()) == 1
            conn.rollback()
        with engine.connect() as conn:
            assert cache.count(conn, stmt, 60, lambda: conn.execute(stmt).scalar_one()) == 0
    finally:
        engine.dispose()


def test_a_browser_on_another_origin_may_ask_for_a_fresh_count(server):
    """Cache-Control (and Prefer: count=...) pass a CORS preflight: a front end on
    another origin can ask for a fresh count too."""
    import requests

    from helpers.server import serve_app

    origin = "http://front.example.test"
    with serve_app(server.settings.replace(cors_origins=[origin])) as srv:
        resp = requests.options(srv.url + "/message", headers={
            "Origin": origin, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "cache-control,prefer"}, timeout=30)
    assert resp.status_code == 200, resp.text
    allowed = [h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")]
    assert "cache-control" in allowed and "prefer" in allowed


def test_every_execution_of_a_write_is_seen_not_only_its_first(tmp_path, redis_client):
    """What a compiled statement writes is worked out once per compiled statement
    (apicrud.db.countcache keeps it): the same INSERT run again, or a read that ran
    before it, must still leave no old count behind; and SQL text that writes is read
    on each execution."""
    engine = create_engine(f"sqlite:///{tmp_path}/again.db")
    try:
        cache = CountCache(engine, redis_client)
        table = _table(engine, "things")
        stmt = select(func.count()).select_from(table)
        add = insert(table)

        def kept_count() -> int:
            with engine.connect() as conn:
                return cache.count(conn, stmt, 60, lambda: conn.execute(stmt).scalar_one())
        assert kept_count() == kept_count() == 0
        for n in range(1, 4):  # the same compiled INSERT each time
            with engine.begin() as conn:
                conn.execute(add, {"id": f"r{n}", "owner": "x"})
            assert kept_count() == kept_count() == n
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM things WHERE id = 'r1'")
        assert kept_count() == 2
        with engine.begin() as conn:
            conn.execute(sql_text("INSERT INTO things (id, owner) VALUES ('t', 'x')"))
        assert kept_count() == 3
    finally:
        engine.dispose()
