"""The baseline: the benchmarked message operations written by hand in Flask + SQLAlchemy.

What a careful developer would write without apicrud for the same answers: the same
tables (apicrud's models), the same Redis session store and Argon2id login, the same
authorization result (CONTRACT 5: author, list role at or above the message's privacy,
public), the same response bodies (fields, ``author``, ``rbac``), ETag / If-Match with the
row version, a signed keyset cursor, problem documents for errors. No spec, no generic
layer: every check is spelled out for this one resource.

It is the "fair" baseline: written with the ORM the way most Flask developers would
(sessions, mapped objects, statements built per request), with the caller's memberships
cached in Redis as apicrud keeps them (:func:`cached_levels`). The benchmark's reference is
bench/expert.py, the same answers written for speed; this one stays to show what the ORM
costs on the same work. The pure helpers here (rules, cursor, body checks, problem
documents) are shared by both.

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
BULK_MAX = 1000  # bench/service.yaml's bulk_max
ROLES_TTL = 300  # apicrud's membership-roles cache lifetime
ESTIMATE_THRESHOLD = 10000  # apicrud's default count_estimate_threshold
LIST_FIELDS = ("id", "name", "description", "privacy", "category_id", "uid", "status",
               "created", "modified")
# the list letters rbac.yaml gives each role, a role holding those of the roles below it
# (owner: the list:{{uid}} entry)
LIST_ROLE_LETTERS = {"manager": "rughij", "member": "rgij", "invitee": "rj"}


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



# -- the rules (CONTRACT 5) and the request checks, shared with bench/expert.py ----------

def highest_levels(rows) -> dict[str, str]:
    """{list id: level} of (list id, level) rows, keeping the highest level of each list."""
    levels: dict[str, str] = {}
    for list_id, level in rows:
        if LEVEL_RANK.get(level, 0) > LEVEL_RANK.get(levels.get(list_id), 0):
            levels[list_id] = level
    return levels


def cached_levels(client, app: str, uid: str, load) -> dict[str, str]:
    """The caller's {list id: level}, cached in Redis for ROLES_TTL seconds as apicrud
    caches its membership roles (one GET per request; ``load()`` on a miss)."""
    key = f"bench:{app}:roles:{uid}"
    cached = client.get(key)
    if cached is not None:
        return json.loads(cached)
    levels = load()
    client.set(key, json.dumps(levels), ex=ROLES_TTL)
    return levels


COUNT_TTL = 60  # seconds the default application keeps a message count (count_cache)


class KeptCounts:
    """A caller's exact message count kept in Redis, as apicrud's count_cache keeps it:
    under the caller and its lists by level, stamped with the message table's write
    generation, which every committed message write raises; ``Cache-Control: no-cache``
    counts anew. One MGET per find when kept (the count and the generation). The
    generation is apicrud's own key for the table (apicrud.db.countcache): the servers
    of a run share one database, and each one's writes must reach the others' counts."""

    def __init__(self, client, app: str, db_url: str) -> None:
        from apicrud.db.countcache import generation_key

        self.client = client
        self.app = app
        self.gen_key = generation_key(db_url, "message")

    def count(self, uid: str, levels: dict[str, str], compute) -> int:
        key = f"bench:{self.app}:counts:n:" + hashlib.sha256(
            json.dumps([uid, sorted(levels.items())]).encode()).hexdigest()
        gen, kept = self.client.mget([self.gen_key, key])
        stamp = gen or b"0"
        fresh = "no-cache" in (request.headers.get("Cache-Control") or "").lower()
        if kept is not None and not fresh:
            kept_stamp, _, number = kept.partition(b"|")
            if kept_stamp == stamp:
                return int(number)
        n = compute()
        self.client.set(key, stamp + b"|" + str(n).encode(), ex=COUNT_TTL)
        return n

    def written(self) -> None:
        """After a committed write of messages."""
        self.client.incr(self.gen_key)


def can_read(uid: str, levels: dict[str, str], m) -> bool:
    if m.uid == uid or m.privacy == "public":
        return True
    level = levels.get(m.list_id)
    return (level is not None and m.privacy != "secret"
            and PRIVACY.index(m.privacy) <= PRIVACY.index(level))

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

def list_rbac(uid: str, levels: dict[str, str], lst) -> str:
    held = set(LIST_ROLE_LETTERS.get(levels.get(lst.id), ""))
    if lst.uid == uid:
        held |= set("crud")
    if held or lst.privacy == "public":
        held |= {"r", "l"}
    return "".join(sorted(held))

# -- signed keyset cursor ---------------------------------------------------------------

def encode_cursor(cursor_key: bytes, last_id: str, limit: int) -> str:
    payload = json.dumps({"i": last_id, "l": limit}, separators=(",", ":")).encode()
    sig = hmac.new(cursor_key, payload, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(sig + payload).decode().rstrip("=")

def decode_cursor(cursor_key: bytes, token: str) -> dict | None:
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

def read_body(many: bool = False) -> dict | list | Response:
    try:
        body = json.loads(request.get_data() or b"null")
    except ValueError:
        return problem(400, "Bad Request", "body: malformed JSON")
    if many and isinstance(body, list):
        if not 1 <= len(body) <= BULK_MAX:
            return problem(400, "Bad Request", f"body: 1 to {BULK_MAX} items")
        for item in body:
            bad = check_item(item)
            if bad is not None:
                return bad
        return body
    return check_item(body) or body

def check_item(body: Any) -> Response | None:
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
    return None


def find_args(cursor_key: bytes) -> dict[str, Any] | Response:
    """A find's query parameters (after, limit, count mode, fields, embed), or a 400."""
    args = request.args
    after = None
    limit = args.get("limit", type=int)
    if "cursor_next" in args:
        state = decode_cursor(cursor_key, args["cursor_next"])
        if state is None:
            return problem(400, "Bad Request", "cursor_next: invalid cursor", "cursor_next")
        after = state["i"]
        limit = state.get("l") if limit is None else limit
    limit = PER_PAGE if limit is None else limit
    if not 1 <= limit <= PER_PAGE_MAX:
        return problem(400, "Bad Request", f"limit: must be 1 to {PER_PAGE_MAX}", "limit")
    mode = args.get("count", "exact")
    if mode not in ("exact", "estimated", "none"):
        return problem(400, "Bad Request", "count: exact, estimated or none", "count")
    fields = None
    if "fields" in args:
        fields = ["id"] + [n for n in args["fields"].split(",") if n != "id"]
        if any(n not in FIELDS + ("author", "rbac") for n in fields):
            return problem(400, "Bad Request", "fields: unknown field", "fields")
    embed = args.get("embed")
    if embed not in (None, "list"):
        return problem(400, "Bad Request", "embed: unknown embed", "embed")
    return {"after": after, "limit": limit, "mode": mode, "fields": fields, "embed": embed}


def page_body(items: list[dict], count: int | None, estimated: bool,
              cursor: str | None) -> Response:
    """The page document and its X-Total-Count header."""
    body: dict[str, Any] = {"items": items}
    headers = {}
    if count is not None:
        body["count"] = count
        headers["X-Total-Count"] = str(count)
        if estimated:
            body["count_estimated"] = True
    if cursor is not None:
        body["cursor_next"] = cursor
    return reply(body, 200, headers)


def create_body() -> dict | list | Response:
    """A create's body (one message or a list of them), or its 400."""
    body = read_body(many=True)
    if isinstance(body, dict) and not isinstance(body.get("list_id"), str):
        return problem(400, "Bad Request", "list_id: is required", "list_id")
    return body


def missing_list_id(bodies: list[dict]) -> Response | None:
    for i, body in enumerate(bodies):
        if not isinstance(body.get("list_id"), str):
            return problem(400, "Bad Request", "list_id: is required", f"[{i}].list_id")
    return None


def login_request(client, app_name: str) -> tuple[dict, str] | Response:
    """(body, lockout key) of a login, or its 400 / 429."""
    try:
        body = json.loads(request.get_data() or b"null")
    except ValueError:
        return problem(400, "Bad Request", "body: malformed JSON")
    if not isinstance(body, dict) or not isinstance(body.get("username"), str) \
            or not isinstance(body.get("password"), str):
        return problem(400, "Bad Request", "username and password are required")
    lock_key = f"{app_name}:lockout:" + hashlib.sha256(
        body["username"].lower().encode()).hexdigest()
    if int(client.get(lock_key) or 0) >= 5:
        return problem(429, "Too Many Requests", "too many failed logins")
    return body, lock_key


def login_reply(sessions, account) -> Response:
    """A session for the account and the login's 201."""
    token, expires = sessions.create(account.uid, account.id, username=account.name,
                                     is_admin=account.is_admin, status=account.status,
                                     csrf=secrets.token_urlsafe(24))
    return reply({"uid": account.uid, "account_id": account.id,
                  "username": account.name, "token": token, "expires": int(expires),
                  "roles": ["user"] + (["admin"] if account.is_admin else [])}, 201)


def unexpected_problem(app: Flask, exc: Exception) -> Response:
    """An HTTP error or an unexpected one as a problem document, never an HTML page."""
    from werkzeug.exceptions import HTTPException

    if isinstance(exc, HTTPException):
        return problem(exc.code or 500, exc.name, exc.description or exc.name)
    app.logger.exception("unexpected error")
    return problem(500, "Internal Server Error", "unexpected error")


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
    counts = KeptCounts(client, "baseline", db_url)
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
        return cached_levels(client, "baseline", uid, lambda: load_memberships(db, uid))

    def load_memberships(db, uid: str) -> dict[str, str]:
        """list id -> the caller's level: listmember rows, plus manager of lists owned."""
        rows = db.execute(
            select(ListMember.list_id, ListMember.authorization)
            .where(ListMember.uid == uid, ListMember.status == "active")
            .union_all(select(ListModel.id, literal("manager"))
                       .where(ListModel.uid == uid, ListModel.status == "active"))).all()
        return highest_levels(rows)

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

    def embedded_lists(db, uid: str, levels: dict[str, str], ids: set[str]) -> dict:
        """The lists of ``ids`` the caller may read (owner, public, or any role in the
        list, whatever its privacy), serialized as a get of the list gives them."""
        if not ids:
            return {}
        rows = db.execute(select(ListModel).where(
            ListModel.id.in_(sorted(ids)), ListModel.status == "active",
            or_(ListModel.uid == uid, ListModel.privacy == "public",
                ListModel.id.in_(sorted(levels))))).scalars()
        out = {}
        for lst in rows:
            body = {name: _json(getattr(lst, name)) for name in LIST_FIELDS}
            body["rbac"] = list_rbac(uid, levels, lst)
            out[lst.id] = body
        return out

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

    # -- routes -----------------------------------------------------------------------------
    @app.post("/api/v1/auth")
    def login():
        parsed = login_request(client, "baseline")
        if isinstance(parsed, Response):
            return parsed
        body, lock_key = parsed
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
        return login_reply(sessions, account)

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
        parsed = find_args(cursor_key)
        if isinstance(parsed, Response):
            return parsed
        after, limit, mode = parsed["after"], parsed["limit"], parsed["mode"]
        fields, embed = parsed["fields"], parsed["embed"]
        with Session() as db:
            levels = memberships(db, uid)
            # "not trashed" as apicrud writes it: with == "active", SQLite walks the
            # status index for the count instead of scanning the covering access index
            where = [Message.status != "disabled", readable_where(uid, levels)]
            count, estimated = None, False
            if mode == "estimated" and database.engine.dialect.name == "postgresql":
                stmt = select(Message.id).where(*where).compile(
                    dialect=database.engine.dialect,
                    compile_kwargs={"render_postcompile": True})
                plan = db.connection().exec_driver_sql(
                    "EXPLAIN (FORMAT JSON) " + str(stmt), stmt.params).scalar()
                plan = json.loads(plan) if isinstance(plan, str) else plan
                guess = int(plan[0]["Plan"]["Plan Rows"])
                if guess >= ESTIMATE_THRESHOLD:
                    count, estimated = guess, True
            if mode != "none" and count is None:
                count = counts.count(uid, levels, lambda: db.execute(
                    select(func.count()).select_from(Message).where(*where)).scalar_one())
            if after is not None:
                where.append(Message.id > after)
            rows = list(db.execute(select(Message).where(*where).order_by(Message.id)
                                   .limit(limit + 1)).scalars())
            # authors in a query of their own: joined into the page query, PostgreSQL
            # plans the join before the LIMIT
            authors = dict(db.execute(select(Person.id, Person.name).where(
                Person.id.in_(sorted({m.uid for m in rows[:limit]})),
                Person.status == "active", or_(Person.id == uid, Person.privacy == "public"))
            ).all()) if rows and (fields is None or "author" in fields) else {}
            items = [serialize(uid, levels, m, authors.get(m.uid)) for m in rows[:limit]]
            if fields is not None:
                items = [{k: item[k] for k in fields} for item in items]
            if embed:
                lists = embedded_lists(db, uid, levels, {m.list_id for m in rows[:limit]})
                for item, m in zip(items, rows, strict=False):  # rows: one more than a page
                    item["list"] = lists.get(m.list_id)
            cursor = encode_cursor(cursor_key, rows[limit - 1].id, limit) \
                if len(rows) > limit else None
        return page_body(items, count, estimated, cursor)

    @app.post("/api/v1/message")
    @signed_in
    def message_create(uid: str):
        body = create_body()
        if isinstance(body, Response):
            return body
        if isinstance(body, list):
            return message_create_many(uid, body)
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
        counts.written()
        return reply(out, 201, {"Location": f"/api/v1/message/{m.id}", "ETag": tag})

    def message_create_many(uid: str, bodies: list[dict]):
        """Every message or none: the lists checked once each, one multi-row INSERT."""
        bad = missing_list_id(bodies)
        if bad is not None:
            return bad
        with Session() as db, db.begin():
            levels = memberships(db, uid)
            wanted = sorted({b["list_id"] for b in bodies})
            live = set(db.execute(select(ListModel.id).where(
                ListModel.id.in_(wanted), ListModel.status == "active")).scalars())
            for i, body in enumerate(bodies):
                if body["list_id"] not in live or \
                        LEVEL_RANK.get(levels.get(body["list_id"]), 0) < LEVEL_RANK["member"]:
                    return problem(404, "Not Found", "list_id: not found", f"[{i}].list_id")
            made = [Message(id=new_id("x-"), uid=uid, privacy=b.get("privacy") or "member",
                            **{k: v for k, v in b.items() if k != "privacy"}) for b in bodies]
            db.add_all(made)
            db.flush()
            name = db.execute(select(Person.name).where(Person.id == uid)).scalar_one()
            items = [serialize(uid, levels, m, name) for m in made]
        counts.written()
        return reply({"items": items, "count": len(items)}, 201)

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
        counts.written()
        return reply(out, 200, {"ETag": tag})

    @app.errorhandler(Exception)
    def unexpected(exc):
        from sqlalchemy.orm.exc import StaleDataError

        if isinstance(exc, StaleDataError):
            return problem(412, "Precondition Failed", "changed by another request")
        return unexpected_problem(app, exc)

    return app
