"""The baseline: the benchmarked message operations written by hand in Flask + SQLAlchemy.

What a careful developer would write without apicrud for the same answers: the same
tables (apicrud's models), the same Redis session store and Argon2id login, the same
authorization result (CONTRACT 5: author, list role at or above the message's privacy,
public), the same response bodies (fields, ``author``, ``rbac``), ETag / If-Match with the
row version, a signed keyset cursor, problem documents for errors. No spec, no generic
layer: every check is spelled out for this one resource.

It asks the database for the caller's memberships on each request (one indexed query),
then runs the same shape of SQL apicrud runs. apicrud keeps memberships cached in Redis
instead; the report counts SQL queries per request for both.

Served by gunicorn: ``gunicorn 'baseline:create_app()'`` with ``BENCH_DB_URL``,
``BENCH_REDIS_URL`` and ``BENCH_SECRET_KEY`` in the environment.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
from datetime import datetime
from typing import Any

from flask import Flask, Response, request
from sqlalchemy import and_, func, literal, or_, select, update
from sqlalchemy.orm import sessionmaker

PRIVACY = ("public", "invitee", "member", "manager", "secret")
LEVEL_RANK = {"invitee": 1, "member": 2, "manager": 3}
FIELDS = ("id", "list_id", "subject", "content", "privacy", "uid", "status", "created",
          "modified")
WRITABLE = {"subject": (str, 128), "content": (str, 65535), "privacy": (str, 8),
            "list_id": (str, 40)}
ID_RE = re.compile(r"[A-Za-z0-9_-]{1,40}")
PER_PAGE, PER_PAGE_MAX = 25, 1000


def _json(value: Any) -> Any:
    return value.isoformat(timespec="microseconds") + "Z" if isinstance(value, datetime) \
        else value


def problem(status: int, title: str, detail: str, field: str | None = None) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail,
            "message": detail}
    if field:
        body["errors"] = {field: detail}
    return Response(json.dumps(body), status, mimetype="application/problem+json")


def reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status, headers,
                    mimetype="application/json")


def create_app(db_url: str | None = None, redis_url: str | None = None,
               secret: str | None = None) -> Flask:
    import redis

    from apicrud.auth.passwords import verify_password
    from apicrud.auth.sessions import SessionManager
    from apicrud.db.base import new_id, utcnow
    from apicrud.db.engine import Database
    from models import Account, ListMember, Message, Person
    from models import List as ListModel

    db_url = db_url or os.environ["BENCH_DB_URL"]
    secret = secret or os.environ["BENCH_SECRET_KEY"]
    database = Database(db_url)  # apicrud's engine set-up: pool, SQLite pragmas
    Session = sessionmaker(database.engine, expire_on_commit=False)
    client = redis.Redis.from_url(redis_url or os.environ["BENCH_REDIS_URL"],
                                  socket_timeout=5, socket_connect_timeout=5)
    sessions = SessionManager(client, secret, limit=20)  # apicrud's default per-user limit
    cursor_key = hashlib.sha256(secret.encode() + b":baseline-cursor").digest()
    app = Flask("bench_baseline")
    app.extensions["bench_engine"] = database.engine

    # -- authentication and authorization ------------------------------------------------
    def caller() -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        session = sessions.get(token.strip())
        return session.get("uid") if session else None

    def signed_in(view):
        """Call ``view(uid, **args)`` for a valid bearer token, else answer 401."""
        @functools.wraps(view)
        def wrapper(**kwargs):
            uid = caller()
            if uid is None:
                return problem(401, "Unauthorized", "invalid or expired credentials")
            return view(uid, **kwargs)
        return wrapper

    def memberships(db, uid: str) -> dict[str, str]:
        """list id -> the caller's level: listmember rows, plus manager of lists owned."""
        rows = db.execute(
            select(ListMember.list_id, ListMember.authorization)
            .where(ListMember.uid == uid, ListMember.status == "active")
            .union_all(select(ListModel.id, literal("manager"))
                       .where(ListModel.uid == uid, ListModel.status == "active"))).all()
        levels: dict[str, str] = {}
        for list_id, level in rows:
            if LEVEL_RANK.get(level, 0) > LEVEL_RANK.get(levels.get(list_id), 0):
                levels[list_id] = level
        return levels

    def can_read(uid: str, levels: dict[str, str], m) -> bool:
        if m.uid == uid or m.privacy == "public":
            return True
        level = levels.get(m.list_id)
        return (level is not None and m.privacy != "secret"
                and PRIVACY.index(m.privacy) <= PRIVACY.index(level))

    def readable_where(uid: str, levels: dict[str, str]):
        """The SQL form of can_read: author, public, or role in the list >= privacy."""
        by_level: dict[str, list[str]] = {}
        for list_id, level in levels.items():
            by_level.setdefault(level, []).append(list_id)
        clauses = [Message.uid == uid, Message.privacy == "public"]
        for level, ids in sorted(by_level.items()):
            allowed = [p for p in PRIVACY[:-1] if PRIVACY.index(p) <= PRIVACY.index(level)]
            clauses.append(and_(Message.list_id.in_(sorted(ids)),
                                Message.privacy.in_(allowed)))
        return or_(*clauses)

    def may_post(db, uid: str, levels: dict[str, str], list_id: str) -> bool:
        """A live list where the caller is member or manager (holders of a list's role
        read it whatever its privacy, so the role decides)."""
        if LEVEL_RANK.get(levels.get(list_id), 0) < LEVEL_RANK["member"]:
            return False
        return db.execute(select(ListModel.id).where(
            ListModel.id == list_id, ListModel.status == "active")).first() is not None

    def rbac(uid: str, levels: dict[str, str], m) -> str:
        held = set()
        if m.uid == uid:
            held |= {"r", "u", "d"}  # (r implies l: rbac.yaml never names l for messages)
        level = levels.get(m.list_id)
        readable_at = level is not None and m.privacy != "secret" and \
            PRIVACY.index(m.privacy) <= PRIVACY.index(level)
        if level == "manager":
            held |= {"c", "u", "d"}
        if level in ("manager", "member"):
            held.add("c")
        if readable_at or m.privacy == "public":
            held.add("r")
        if "r" in held:
            held.add("l")
        return "".join(sorted(held))

    def etag(m) -> str:
        return '"' + hashlib.sha256(f"{m.id}:{m.version}".encode()).hexdigest()[:20] + '"'

    def serialize(uid: str, levels: dict[str, str], m, author: str | None) -> dict:
        out = {name: _json(getattr(m, name)) for name in FIELDS}
        out["author"] = author
        out["rbac"] = rbac(uid, levels, m)
        return out

    def with_author(uid: str, *where):
        """Messages with their author's name where the caller may read that person
        (their own record or a public one), else null."""
        on = and_(Person.id == Message.uid, Person.status == "active",
                  or_(Person.id == uid, Person.privacy == "public"))
        return select(Message, Person.name.label("author")).outerjoin(Person, on).where(*where)

    # -- signed keyset cursor ------------------------------------------------------------
    def encode_cursor(last_id: str, limit: int) -> str:
        payload = json.dumps({"i": last_id, "l": limit}, separators=(",", ":")).encode()
        sig = hmac.new(cursor_key, payload, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(sig + payload).decode().rstrip("=")

    def decode_cursor(token: str) -> dict | None:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError:
            return None
        sig, payload = raw[:16], raw[16:]
        if len(sig) < 16 or not hmac.compare_digest(
                sig, hmac.new(cursor_key, payload, hashlib.sha256).digest()[:16]):
            return None
        try:
            state = json.loads(payload)
        except ValueError:
            return None
        return state if isinstance(state, dict) and isinstance(state.get("i"), str) else None

    def read_body() -> dict | Response:
        try:
            body = json.loads(request.get_data() or b"null")
        except ValueError:
            return problem(400, "Bad Request", "body: malformed JSON")
        if not isinstance(body, dict):
            return problem(400, "Bad Request", "body: must be a JSON object")
        for name, value in body.items():
            kind = WRITABLE.get(name)
            if kind is None:
                return problem(400, "Bad Request", f"{name[:40]}: unknown or read-only", name)
            if value is not None and (not isinstance(value, kind[0]) or len(value) > kind[1]):
                return problem(400, "Bad Request", f"{name}: wrong type or too long", name)
        if "privacy" in body and body["privacy"] not in PRIVACY:
            return problem(400, "Bad Request", "privacy: not a privacy level", "privacy")
        return body

    # -- routes -----------------------------------------------------------------------------
    @app.post("/api/v1/auth")
    def login():
        try:
            body = json.loads(request.get_data() or b"null")
        except ValueError:
            return problem(400, "Bad Request", "body: malformed JSON")
        if not isinstance(body, dict) or not isinstance(body.get("username"), str) \
                or not isinstance(body.get("password"), str):
            return problem(400, "Bad Request", "username and password are required")
        lock_key = "baseline:lockout:" + hashlib.sha256(
            body["username"].lower().encode()).hexdigest()
        if int(client.get(lock_key) or 0) >= 5:
            return problem(429, "Too Many Requests", "too many failed logins")
        with Session() as db, db.begin():
            account = db.execute(select(Account).where(
                Account.name == body["username"], Account.status == "active")) \
                .scalar_one_or_none()
            if not verify_password(account.password if account else None, body["password"]):
                client.pipeline().incr(lock_key).expire(lock_key, 300).execute()
                return problem(401, "Unauthorized", "invalid username or password")
            client.delete(lock_key)
            db.execute(update(Account).where(Account.id == account.id)
                       .values(last_login=utcnow(), modified=Account.modified))
        token, expires = sessions.create(account.uid, account.id, username=account.name,
                                         is_admin=account.is_admin, status=account.status,
                                         csrf=secrets.token_urlsafe(24))
        return reply({"uid": account.uid, "account_id": account.id,
                      "username": account.name, "token": token, "expires": int(expires),
                      "roles": ["user"] + (["admin"] if account.is_admin else [])}, 201)

    @app.get("/api/v1/message/<id_>")
    @signed_in
    def message_get(uid: str, id_: str):
        if not ID_RE.fullmatch(id_):
            return problem(404, "Not Found", "message not found")
        with Session() as db:
            levels = memberships(db, uid)
            row = db.execute(with_author(uid, Message.id == id_,
                                         Message.status == "active")).first()
            if row is None or not can_read(uid, levels, row[0]):
                return problem(404, "Not Found", "message not found")
            return reply(serialize(uid, levels, row[0], row[1]), 200, {"ETag": etag(row[0])})

    @app.get("/api/v1/message")
    @signed_in
    def message_find(uid: str):
        after = None
        limit = request.args.get("limit", type=int)
        if "cursor_next" in request.args:
            state = decode_cursor(request.args["cursor_next"])
            if state is None:
                return problem(400, "Bad Request", "cursor_next: invalid cursor",
                               "cursor_next")
            after, limit = state["i"], limit or state.get("l")
        limit = limit or PER_PAGE
        if not 1 <= limit <= PER_PAGE_MAX:
            return problem(400, "Bad Request", f"limit: must be 1 to {PER_PAGE_MAX}", "limit")
        with Session() as db:
            levels = memberships(db, uid)
            # "not trashed" as apicrud writes it: with == "active", SQLite walks the
            # status index for the count instead of scanning the covering access index
            where = [Message.status != "disabled", readable_where(uid, levels)]
            count = db.execute(select(func.count()).select_from(Message).where(*where)) \
                .scalar_one()
            if after is not None:
                where.append(Message.id > after)
            rows = list(db.execute(select(Message).where(*where).order_by(Message.id)
                                   .limit(limit + 1)).scalars())
            # authors in a query of their own: joined into the page query, PostgreSQL
            # plans the join before the LIMIT
            authors = dict(db.execute(select(Person.id, Person.name).where(
                Person.id.in_(sorted({m.uid for m in rows[:limit]})),
                Person.status == "active", or_(Person.id == uid, Person.privacy == "public"))
            ).all()) if rows else {}
            body: dict[str, Any] = {
                "items": [serialize(uid, levels, m, authors.get(m.uid)) for m in rows[:limit]],
                "count": count}
            if len(rows) > limit:
                body["cursor_next"] = encode_cursor(rows[limit - 1].id, limit)
        return reply(body, 200, {"X-Total-Count": str(count)})

    @app.post("/api/v1/message")
    @signed_in
    def message_create(uid: str):
        body = read_body()
        if isinstance(body, Response):
            return body
        if not isinstance(body.get("list_id"), str):
            return problem(400, "Bad Request", "list_id: is required", "list_id")
        with Session() as db, db.begin():
            levels = memberships(db, uid)
            if not may_post(db, uid, levels, body["list_id"]):
                return problem(404, "Not Found", "list_id: not found", "list_id")
            m = Message(id=new_id("x-"), uid=uid, privacy=body.get("privacy") or "member",
                        **{k: v for k, v in body.items() if k != "privacy"})
            db.add(m)
            db.flush()
            name = db.execute(select(Person.name).where(Person.id == uid)).scalar_one()
            out = serialize(uid, levels, m, name)
            tag = etag(m)
        return reply(out, 201, {"Location": f"/api/v1/message/{m.id}", "ETag": tag})

    @app.put("/api/v1/message/<id_>")
    @signed_in
    def message_update(uid: str, id_: str):
        body = read_body()
        if isinstance(body, Response):
            return body
        with Session() as db, db.begin():
            levels = memberships(db, uid)
            stmt = with_author(uid, Message.id == id_, Message.status == "active")
            if database.engine.dialect.name != "sqlite":
                stmt = stmt.with_for_update(of=Message)
            row = db.execute(stmt).first()
            if row is None or not can_read(uid, levels, row[0]):
                return problem(404, "Not Found", "message not found")
            m, author = row
            if_match = request.headers.get("If-Match")
            if if_match and if_match.strip() not in ("*", etag(m)):
                return problem(412, "Precondition Failed", "If-Match does not match")
            if "u" not in rbac(uid, levels, m):
                return problem(403, "Forbidden", "not allowed to update this message")
            if "list_id" in body and body["list_id"] != m.list_id and \
                    not may_post(db, uid, levels, body["list_id"]):
                return problem(404, "Not Found", "list_id: not found", "list_id")
            for name, value in body.items():
                setattr(m, name, value)
            db.flush()  # the versioned UPDATE: a concurrent writer of this version loses
            out = serialize(uid, levels, m, author)
            tag = etag(m)
        return reply(out, 200, {"ETag": tag})

    @app.errorhandler(Exception)
    def unexpected(exc):  # still a problem document, never an HTML page
        from sqlalchemy.orm.exc import StaleDataError
        from werkzeug.exceptions import HTTPException

        if isinstance(exc, HTTPException):
            return problem(exc.code or 500, exc.name, exc.description or exc.name)
        if isinstance(exc, StaleDataError):
            return problem(412, "Precondition Failed", "changed by another request")
        app.logger.exception("unexpected error")
        return problem(500, "Internal Server Error", "unexpected error")

    return app
