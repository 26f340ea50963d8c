"""The expert baseline: the benchmarked message operations written by hand for speed.

The benchmark's reference. The same answers as apicrud and bench/baseline.py (the rules,
fields, ``author``, ``rbac``, ETag / If-Match, signed cursor, problem documents: the pure
helpers are baseline.py's), written the way a performance-minded developer would write
them without a framework:

- SQLAlchemy Core on a Connection, rows as tuples (no ORM objects, no Session);
- every statement built once, at start, with bind parameters, and expanding IN lists for
  the caller's lists, so a request only binds values (SQLAlchemy's compiled cache does the
  rest);
- the versioned UPDATE written out (``WHERE id = :id AND version = :version``, a miss is a
  412), the INSERT with its values, no flush or identity map;
- the session (apicrud's encrypted session, read with apicrud's SessionManager: the same
  auth cost) and the caller's memberships read from Redis, as apicrud keeps them;
- on PostgreSQL no pool pre-ping, and reads in autocommit (no BEGIN / ROLLBACK around
  them); writes in one transaction. SQLite gets apicrud's connection pragmas.

What it does not do that apicrud does: a spec, validation against a schema, the generic
evaluator, access log, metrics, i18n of problems. Those are what the comparison is for.

Served by gunicorn: ``gunicorn 'expert:create_app()'`` with ``BENCH_DB_URL``,
``BENCH_REDIS_URL`` and ``BENCH_SECRET_KEY`` in the environment.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections import namedtuple
from typing import Any

from baseline import (
    ESTIMATE_THRESHOLD,
    FIELDS,
    ID_RE,
    LEVEL_RANK,
    LIST_FIELDS,
    PRIVACY,
    KeptCounts,
    _json,
    cached_levels,
    can_read,
    create_body,
    encode_cursor,
    find_args,
    highest_levels,
    list_rbac,
    login_reply,
    login_request,
    missing_list_id,
    page_body,
    problem,
    rbac,
    read_body,
    reply,
    unexpected_problem,
)
from flask import Flask, Response, request
from sqlalchemy import (
    and_,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)

# privacy values each level reads (never secret)
READS = {level: PRIVACY[:PRIVACY.index(level) + 1] for level in LEVEL_RANK}
MESSAGE_COLS = FIELDS + ("version",)
Written = namedtuple("Written", MESSAGE_COLS)  # a row the app wrote, as the rules read it


def get_statement(m_t, p_t):
    """A get's one query: the message (id, live) with its author's name where the caller
    (``me``) may read that person, else null."""
    author_on = and_(p_t.c.id == m_t.c.uid, p_t.c.status == "active",
                     or_(p_t.c.id == bindparam("me"), p_t.c.privacy == "public"))
    return select(*[m_t.c[n] for n in MESSAGE_COLS], p_t.c.name) \
        .select_from(m_t.outerjoin(p_t, author_on)) \
        .where(m_t.c.id == bindparam("id"), m_t.c.status == "active")


def engines(url: str):
    """(engine for writes, engine for reads): on PostgreSQL reads run in autocommit, and
    neither pre-pings; SQLite connections get apicrud's pragmas."""
    from apicrud.db.engine import _sqlite_pragmas

    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine, engine
    engine = create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=False)
    return engine, engine.execution_options(isolation_level="AUTOCOMMIT")


def create_app(db_url: str | None = None, redis_url: str | None = None,
               secret: str | None = None) -> Flask:
    import redis

    from apicrud.auth.passwords import verify_password
    from apicrud.auth.sessions import SessionManager
    from apicrud.db.base import new_id, utcnow
    from models import Account, ListMember, Message, Person
    from models import List as ListModel

    db_url = db_url or os.environ["BENCH_DB_URL"]
    secret = secret or os.environ["BENCH_SECRET_KEY"]
    writer, reader = engines(db_url)
    client = redis.Redis.from_url(redis_url or os.environ["BENCH_REDIS_URL"],
                                  socket_timeout=5, socket_connect_timeout=5)
    sessions = SessionManager(client, secret, limit=20)
    counts = KeptCounts(client, "expert", db_url)
    cursor_key = hashlib.sha256(secret.encode() + b":baseline-cursor").digest()
    app = Flask("bench_expert")
    app.extensions["bench_engine"] = writer
    pg = writer.dialect.name == "postgresql"

    m_t, p_t, l_t, lm_t, a_t = (x.__table__ for x in (Message, Person, ListModel, ListMember,
                                                       Account))
    mcols = [m_t.c[n] for n in MESSAGE_COLS]

    # -- every statement, built once ------------------------------------------------------
    q_levels = select(lm_t.c.list_id, lm_t.c.authorization).where(
        lm_t.c.uid == bindparam("uid"), lm_t.c.status == "active").union_all(
        select(l_t.c.id, literal("manager")).where(l_t.c.uid == bindparam("uid"),
                                                   l_t.c.status == "active"))
    q_get = get_statement(m_t, p_t)
    q_get_for_update = q_get.with_for_update(of=m_t) if pg else q_get
    # readable: author, public, or a role in the list at or above the privacy
    readable = or_(m_t.c.uid == bindparam("me"), m_t.c.privacy == "public",
                   *[and_(m_t.c.list_id.in_(bindparam(f"in_{lv}", expanding=True)),
                          m_t.c.privacy.in_(READS[lv])) for lv in sorted(LEVEL_RANK)])
    live = m_t.c.status != "disabled"  # apicrud's "not trashed" (the count's index)
    q_count = select(func.count()).select_from(m_t).where(live, readable)
    q_ids = select(m_t.c.id).where(live, readable)
    q_page = select(*mcols).where(live, readable).order_by(m_t.c.id).limit(bindparam("n"))
    q_page_after = select(*mcols).where(live, readable, m_t.c.id > bindparam("after")) \
        .order_by(m_t.c.id).limit(bindparam("n"))
    q_authors = select(p_t.c.id, p_t.c.name).where(
        p_t.c.id.in_(bindparam("ids", expanding=True)), p_t.c.status == "active",
        or_(p_t.c.id == bindparam("me"), p_t.c.privacy == "public"))
    q_lists = select(*[l_t.c[n] for n in LIST_FIELDS]).where(
        l_t.c.id.in_(bindparam("ids", expanding=True)), l_t.c.status == "active",
        or_(l_t.c.uid == bindparam("me"), l_t.c.privacy == "public",
            l_t.c.id.in_(bindparam("mine", expanding=True))))
    # a create's two reads in one statement: is the list live, and the author's name
    q_list_and_name = select(
        select(l_t.c.id).where(l_t.c.id == bindparam("list_id"), l_t.c.status == "active")
        .scalar_subquery(),
        select(p_t.c.name).where(p_t.c.id == bindparam("me")).scalar_subquery())
    q_live_lists = select(l_t.c.id).where(l_t.c.id.in_(bindparam("ids", expanding=True)),
                                          l_t.c.status == "active")
    q_name = select(p_t.c.name).where(p_t.c.id == bindparam("me"))
    q_list_live = select(l_t.c.id).where(l_t.c.id == bindparam("list_id"),
                                         l_t.c.status == "active")
    ins_message = insert(m_t)
    q_account = select(a_t.c.id, a_t.c.uid, a_t.c.name, a_t.c.password, a_t.c.is_admin,
                       a_t.c.status).where(a_t.c.name == bindparam("name"),
                                           a_t.c.status == "active")
    upd_login = update(a_t).where(a_t.c.id == bindparam("aid")).values(
        last_login=bindparam("now"), modified=a_t.c.modified)
    updates: dict[tuple[str, ...], Any] = {}

    def versioned_update(names: tuple[str, ...]):
        """UPDATE message SET <names>, modified, version + 1 WHERE id AND version."""
        stmt = updates.get(names)
        if stmt is None:
            stmt = updates[names] = update(m_t).where(
                m_t.c.id == bindparam("b_id"), m_t.c.version == bindparam("b_version")
            ).values(version=m_t.c.version + 1, modified=bindparam("b_modified"),
                     **{n: bindparam("b_" + n) for n in names})
        return stmt

    # -- authentication and authorization ------------------------------------------------
    def levels_of(conn, uid: str) -> dict[str, str]:
        return cached_levels(client, "expert", uid,
                             lambda: highest_levels(conn.execute(q_levels, {"uid": uid})))

    def level_params(uid: str, levels: dict[str, str]) -> dict[str, Any]:
        params: dict[str, Any] = {"me": uid, **{f"in_{lv}": [] for lv in LEVEL_RANK}}
        for list_id, level in levels.items():
            params[f"in_{level}"].append(list_id)
        return params

    def signed_in(view):
        """Call ``view(uid, **args)`` for a valid bearer token, else answer 401."""
        @functools.wraps(view)
        def wrapper(**kwargs):
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            session = sessions.get(token.strip()) if scheme.lower() == "bearer" else None
            if not session:
                return problem(401, "Unauthorized", "invalid or expired credentials")
            return view(session["uid"], **kwargs)
        return wrapper

    def etag(mid: str, version: int) -> str:
        return '"' + hashlib.sha256(f"{mid}:{version}".encode()).hexdigest()[:20] + '"'

    def serialize(uid: str, levels: dict[str, str], row, author: str | None) -> dict:
        # the row carries the version (and the author) after the fields
        out = {name: _json(value) for name, value in zip(FIELDS, row, strict=False)}
        out["author"] = author
        out["rbac"] = rbac(uid, levels, row)
        return out

    # -- routes -----------------------------------------------------------------------------
    @app.post("/api/v1/auth")
    def login():
        parsed = login_request(client, "expert")
        if isinstance(parsed, Response):
            return parsed
        body, lock_key = parsed
        with writer.begin() as conn:
            account = conn.execute(q_account, {"name": body["username"]}).first()
            if not verify_password(account.password if account else None, body["password"]):
                client.pipeline().incr(lock_key).expire(lock_key, 300).execute()
                return problem(401, "Unauthorized", "invalid username or password")
            client.delete(lock_key)
            conn.execute(upd_login, {"aid": account.id, "now": utcnow()})
        return login_reply(sessions, account)

    @app.get("/api/v1/message/<id_>")
    @signed_in
    def message_get(uid: str, id_: str):
        if not ID_RE.fullmatch(id_):
            return problem(404, "Not Found", "message not found")
        with reader.connect() as conn:
            levels = levels_of(conn, uid)
            row = conn.execute(q_get, {"id": id_, "me": uid}).first()
        if row is None or not can_read(uid, levels, row):
            return problem(404, "Not Found", "message not found")
        return reply(serialize(uid, levels, row, row[-1]), 200, {"ETag": etag(row[0], row[9])})

    @app.get("/api/v1/message")
    @signed_in
    def message_find(uid: str):
        parsed = find_args(cursor_key)
        if isinstance(parsed, Response):
            return parsed
        after, limit, mode = parsed["after"], parsed["limit"], parsed["mode"]
        fields, embed = parsed["fields"], parsed["embed"]
        with reader.connect() as conn:
            levels = levels_of(conn, uid)
            params = level_params(uid, levels)
            count, estimated = None, False
            if mode == "estimated" and pg:
                # the statement rendered with this caller's values (SQLAlchemy quotes
                # them) for the planner's estimate: rare, count=estimated only
                compiled = q_ids.params(**params).compile(
                    dialect=writer.dialect, compile_kwargs={"literal_binds": True})
                plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + str(compiled)).scalar()
                plan = json.loads(plan) if isinstance(plan, str) else plan
                guess = int(plan[0]["Plan"]["Plan Rows"])
                if guess >= ESTIMATE_THRESHOLD:
                    count, estimated = guess, True
            if mode != "none" and count is None:
                count = counts.count(uid, levels,
                                     lambda: conn.execute(q_count, params).scalar_one())
            params["n"] = limit + 1
            if after is None:
                rows = conn.execute(q_page, params).all()
            else:
                params["after"] = after
                rows = conn.execute(q_page_after, params).all()
            page = rows[:limit]
            authors = dict(conn.execute(q_authors, {
                "ids": sorted({r[5] for r in page}), "me": uid}).all()) \
                if page and (fields is None or "author" in fields) else {}
            lists = {}
            if embed and page:
                for lst in conn.execute(q_lists, {"ids": sorted({r[1] for r in page}),
                                                  "me": uid, "mine": sorted(levels)}):
                    body = {name: _json(value)
                            for name, value in zip(LIST_FIELDS, lst, strict=True)}
                    body["rbac"] = list_rbac(uid, levels, lst)
                    lists[lst[0]] = body
        items = [serialize(uid, levels, r, authors.get(r[5])) for r in page]
        if fields is not None:
            items = [{k: item[k] for k in fields} for item in items]
        if embed:
            for item, r in zip(items, page, strict=True):
                item["list"] = lists.get(r[1])
        cursor = encode_cursor(cursor_key, page[-1][0], limit) if len(rows) > limit else None
        return page_body(items, count, estimated, cursor)

    def new_row(uid: str, body: dict, now) -> dict[str, Any]:
        return {"id": new_id("x-"), "list_id": body["list_id"], "subject": body.get("subject"),
                "content": body.get("content"), "privacy": body.get("privacy") or "member",
                "uid": uid, "status": "active", "created": now, "modified": None,
                "version": 1, "live": True}

    def written(uid: str, levels: dict[str, str], row: dict, author: str | None) -> dict:
        return serialize(uid, levels, Written(*(row[n] for n in MESSAGE_COLS)), author)

    @app.post("/api/v1/message")
    @signed_in
    def message_create(uid: str):
        body = create_body()
        if isinstance(body, Response):
            return body
        if isinstance(body, list):
            return message_create_many(uid, body)
        with writer.begin() as conn:
            levels = levels_of(conn, uid)
            if LEVEL_RANK.get(levels.get(body["list_id"]), 0) < LEVEL_RANK["member"]:
                return problem(404, "Not Found", "list_id: not found", "list_id")
            live_list, name = conn.execute(q_list_and_name,
                                           {"list_id": body["list_id"], "me": uid}).one()
            if live_list is None:
                return problem(404, "Not Found", "list_id: not found", "list_id")
            row = new_row(uid, body, utcnow())
            conn.execute(ins_message, row)
        counts.written()
        return reply(written(uid, levels, row, name), 201,
                     {"Location": f"/api/v1/message/{row['id']}", "ETag": etag(row["id"], 1)})

    def message_create_many(uid: str, bodies: list[dict]):
        """Every message or none: the lists checked in one query, one multi-row INSERT."""
        bad = missing_list_id(bodies)
        if bad is not None:
            return bad
        with writer.begin() as conn:
            levels = levels_of(conn, uid)
            live = set(conn.execute(q_live_lists, {
                "ids": sorted({b["list_id"] for b in bodies})}).scalars())
            for i, body in enumerate(bodies):
                if body["list_id"] not in live or \
                        LEVEL_RANK.get(levels.get(body["list_id"]), 0) < LEVEL_RANK["member"]:
                    return problem(404, "Not Found", "list_id: not found", f"[{i}].list_id")
            now = utcnow()
            rows = [new_row(uid, b, now) for b in bodies]
            conn.execute(ins_message, rows)
            name = conn.execute(q_name, {"me": uid}).scalar_one()
        counts.written()
        items = [written(uid, levels, r, name) for r in rows]
        return reply({"items": items, "count": len(items)}, 201)

    @app.put("/api/v1/message/<id_>")
    @signed_in
    def message_update(uid: str, id_: str):
        body = read_body()
        if isinstance(body, Response):
            return body
        with writer.begin() as conn:
            levels = levels_of(conn, uid)
            row = conn.execute(q_get_for_update, {"id": id_, "me": uid}).first()
            if row is None or not can_read(uid, levels, row):
                return problem(404, "Not Found", "message not found")
            version = row[9]
            if_match = request.headers.get("If-Match")
            if if_match and if_match.strip() not in ("*", etag(id_, version)):
                return problem(412, "Precondition Failed", "If-Match does not match")
            if "u" not in rbac(uid, levels, row):
                return problem(403, "Forbidden", "not allowed to update this message")
            if "list_id" in body and body["list_id"] != row[1] and (
                    LEVEL_RANK.get(levels.get(body["list_id"]), 0) < LEVEL_RANK["member"]
                    or conn.execute(q_list_live, {"list_id": body["list_id"]}).first() is None):
                return problem(404, "Not Found", "list_id: not found", "list_id")
            names = tuple(sorted(body))
            now = utcnow()
            done = conn.execute(versioned_update(names), {
                "b_id": id_, "b_version": version, "b_modified": now,
                **{"b_" + n: body[n] for n in names}})
            if done.rowcount != 1:  # a concurrent writer of this version won: nothing written
                return problem(412, "Precondition Failed", "changed by another request")
        counts.written()
        new = dict(zip(MESSAGE_COLS, row, strict=False))  # the row carries more
        new.update(body, modified=now, version=version + 1)
        return reply(written(uid, levels, new, row[-1]), 200,
                     {"ETag": etag(id_, version + 1)})

    @app.errorhandler(Exception)
    def unexpected(exc):
        return unexpected_problem(app, exc)

    return app
