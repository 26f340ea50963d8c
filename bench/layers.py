"""The serving layers of a get, one at a time, for the floor of bench/crud.py's report.

One Flask app under the same gunicorn as the others, three routes that answer
``GET /<layer>/api/v1/message/<id>`` with the same constant body (a real message's JSON,
read once at start):

  const   nothing but the constant response: Flask + gunicorn + the socket;
  redis   + the caller's session (apicrud's SessionManager: GET + decrypt) and
          membership roles (one GET + JSON) read from Redis, as every request does;
  sql     + the one SQL query of a get (bench/expert.py's statement, built once, on a
          Connection, no pre-ping), its row thrown away.

bench/expert.py adds to ``sql`` only the rules (can_read, rbac) and the JSON of the row;
apicrud adds its generic layer. The difference between two lines of the report is what
that layer costs. Served with ``gunicorn 'layers:create_app()'`` and the BENCH_* environment
of bench/expert.py.
"""

from __future__ import annotations

import json
import os

from baseline import cached_levels, problem
from expert import MESSAGE_COLS, engines, get_statement
from flask import Flask, Response, request
from sqlalchemy import select


def create_app(db_url: str | None = None, redis_url: str | None = None,
               secret: str | None = None) -> Flask:
    import redis

    from apicrud.auth.sessions import SessionManager
    from models import Message, Person

    db_url = db_url or os.environ["BENCH_DB_URL"]
    secret = secret or os.environ["BENCH_SECRET_KEY"]
    _, reader = engines(db_url)
    client = redis.Redis.from_url(redis_url or os.environ["BENCH_REDIS_URL"],
                                  socket_timeout=5, socket_connect_timeout=5)
    sessions = SessionManager(client, secret, limit=20)
    m_t, p_t = Message.__table__, Person.__table__
    q_get = get_statement(m_t, p_t)
    with reader.connect() as conn:
        row = conn.execute(select(*[m_t.c[n] for n in MESSAGE_COLS[:-1]]).limit(1)).first()
    body = json.dumps({k: (v.isoformat(timespec="microseconds") + "Z"
                           if hasattr(v, "isoformat") else v)
                       for k, v in row._mapping.items()} | {"author": None, "rbac": "lr"},
                      separators=(",", ":"))
    app = Flask("bench_layers")
    app.extensions["bench_engine"] = reader

    def constant() -> Response:
        return Response(body, 200, {"ETag": '"0123456789abcdef0123"'},
                        mimetype="application/json")

    def caller() -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        session = sessions.get(token.strip()) if scheme.lower() == "bearer" else None
        if not session:
            return None
        cached_levels(client, "expert", session["uid"], dict)  # read as expert.py reads it
        return session["uid"]

    @app.get("/const/api/v1/message/<id_>")
    def const(id_: str):
        return constant()

    @app.get("/redis/api/v1/message/<id_>")
    def with_redis(id_: str):
        if caller() is None:
            return problem(401, "Unauthorized", "invalid or expired credentials")
        return constant()

    @app.get("/sql/api/v1/message/<id_>")
    def with_sql(id_: str):
        uid = caller()
        if uid is None:
            return problem(401, "Unauthorized", "invalid or expired credentials")
        with reader.connect() as conn:
            conn.execute(q_get, {"id": id_, "me": uid}).first()
        return constant()

    @app.get("/api/v1/message")
    def ready():  # bench/crud.py waits for this path to answer
        return constant()

    return app
