#!/usr/bin/env python3
"""In-process probe: the benchmark's operations on apicrud and on the baseline, one request
at a time, counting SQL statements and timing each request; optionally profiling one.

    .venv/bin/python bench/probe.py [--db URL] [--scale tiny|full] [-n 200]
    .venv/bin/python bench/probe.py --profile get [--app apicrud]   # needs pyinstrument

It seeds the data set (bench/dataset.py), builds both WSGI apps in this process against the
same database and a Redis of its own, checks that both give the same answers (the same
records, counts, ``author`` and ``rbac`` values, as the data set's own reading of the
rules predicts), then runs every operation ``-n`` times through Werkzeug's test client:
no sockets, no server, so the figures are the framework's and the database's work alone.
``bench/crud.py`` uses :func:`prepare`, :func:`check_same_answers` and
:func:`count_queries` for the query column of its report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import dataset  # noqa: E402

BASE = "/api/v1"
SECRET_KEY = "bench-secret-key-0123456789abcdef"
PAGE = 25
DEEP_PAGE = 2000
OPERATIONS = {
    "find_page1": "GET /message?limit=25 (page 1, RBAC-filtered)",
    "find_deep": "GET /message?limit=25&cursor_next=... (page 2,000)",
    "get": "GET /message/{id}",
    "create": "POST /message",
    "update": "PUT /message/{id} with If-Match",
    "login": "POST /auth",
    "find_count_none": "GET /message?limit=25&count=none (page 1, no count)",
    "find_recount": "GET /message?limit=25, Cache-Control: no-cache (page 1, counted anew)",
    "find_count_estimated": "GET /message?limit=25&count=estimated (page 1)",
    "find_fields_embed": "GET /message?limit=25&fields=subject,author&embed=list",
    # last: each request adds 1,000 rows, which the finds above would then count
    "bulk_create": "POST /message with an array of 1,000 messages",
}
FIND_PATHS = {
    "find_page1": "/message?limit=25",
    "find_count_none": "/message?limit=25&count=none",
    "find_count_estimated": "/message?limit=25&count=estimated",
    "find_fields_embed": "/message?limit=25&fields=subject,author&embed=list",
    "find_recount": "/message?limit=25",
}
#: request headers of a find (the others send none): a client asking for a fresh count
#: is counted anew, where apicrud and the baselines keep exact counts (count_cache)
FIND_HEADERS = {"find_recount": {"Cache-Control": "no-cache"}}
BULK_SIZE = 1000
BASELINES = ("expert", "baseline")  # bench/expert.py (the reference), bench/baseline.py (ORM)


def bulk_body(ds: dataset.Dataset, n: int = BULK_SIZE) -> list[dict[str, str]]:
    """The body of one bulk create: ``n`` messages spread over the postable lists."""
    lists = ds.postable_lists
    return [{"list_id": lists[i % len(lists)], "subject": f"bulk {i}",
             "content": "created in bulk by the benchmark", "privacy": "member"}
            for i in range(n)]


def apicrud_settings(db_url: str | None, data_dir: str, redis_url: str, root: Path = ROOT):
    from apicrud.config import load_settings

    return load_settings(root=str(root), config_file=str(BENCH_DIR / "service.yaml"),
                         environ={}, data_dir=data_dir, secret_key=SECRET_KEY,
                         redis_url=redis_url, database_url=db_url or "")


# -- one app in this process ----------------------------------------------------------------

@dataclass
class Target:
    """A WSGI app driven through the test client, counting the SQL it sends."""

    name: str
    app: Any
    engine: Any
    queries: list[str] = field(default_factory=list)
    token: str = ""

    def __post_init__(self) -> None:
        from sqlalchemy import event

        self.client = self.app.test_client()
        event.listen(self.engine, "before_cursor_execute", self._count)

    def _count(self, _conn, _cursor, statement, *_args) -> None:
        self.queries.append(statement)

    def call(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None, token: str | None = None):
        h = dict(headers or {})
        if token or self.token:
            h["Authorization"] = f"Bearer {token or self.token}"
        resp = self.client.open(BASE + path, method=method, headers=h,
                                data=json.dumps(body) if body is not None else None,
                                content_type="application/json" if body is not None else None)
        return resp.status_code, resp.headers, resp.get_json(silent=True)

    def login(self, username: str = "bench") -> str:
        status, _, doc = self.call("POST", "/auth", {"username": username,
                                                     "password": dataset.PASSWORD}, token="")
        if status != 201:
            raise RuntimeError(f"{self.name}: login failed: {status} {doc}")
        return doc["token"]


def apicrud_target(settings) -> Target:
    from apicrud.app import create_app

    app = create_app(settings=settings, migrate=False)
    return Target("apicrud", app, app.extensions["apicrud"].db.engine)


def baseline_target(settings, name: str = "baseline") -> Target:
    """``name``: baseline (bench/baseline.py, the ORM) or expert (bench/expert.py)."""
    import importlib

    module = importlib.import_module(name)
    app = module.create_app(settings.sqlalchemy_url, settings.redis_url, SECRET_KEY)
    return Target(name, app, app.extensions["bench_engine"])


# -- the operations ---------------------------------------------------------------------

@dataclass
class OpState:
    """Per-app state the operations carry between calls (cursor, ETags, counters)."""

    deep_cursor: str = ""
    deep_page: int = 1
    own: list[str] = field(default_factory=list)  # the records this app updates
    etags: dict[str, str] = field(default_factory=dict)
    n: int = 0


def skip_plan(page: int, size: int = PAGE, big: int = 1000) -> list[int]:
    """Page sizes that walk past the first ``page - 1`` pages of ``size`` rows: large
    pages first (fewer requests), then pages of ``size``. A keyset cursor marks a row,
    not a page size: the cursor after these is the one of page ``page``, and a request
    giving ``limit=size`` with it returns that page."""
    rows = (page - 1) * size
    return [big] * (rows // big) + [size] * ((rows % big) // size)


def walk_pages(fetch, page: int) -> tuple[str, int]:
    """(cursor of page ``page``, the page it reaches) with ``fetch(path) -> document``;
    on a shorter result, the last page's cursor."""
    cursor, rows = "", 0
    for size in skip_plan(page):
        doc = fetch(f"/message?limit={size}" + (f"&cursor_next={cursor}" if cursor else ""))
        if "cursor_next" not in doc:
            break
        cursor, rows = doc["cursor_next"], rows + size
    return cursor, 1 + rows // PAGE


def deep_cursor(t: Target, ds: dataset.Dataset, page: int) -> tuple[str, int]:
    def fetch(path: str) -> dict:
        status, _, doc = t.call("GET", path)
        if status != 200:
            raise RuntimeError(f"{t.name}: walking pages: HTTP {status} {doc}")
        return doc
    return walk_pages(fetch, page)


def request_for(op: str, ds: dataset.Dataset, st: OpState) -> tuple[str, str, Any, dict]:
    """(method, path, body, headers) of the next request of ``op``."""
    i = st.n
    st.n += 1
    if op in FIND_PATHS:
        return "GET", FIND_PATHS[op], None, dict(FIND_HEADERS.get(op, {}))
    if op == "bulk_create":
        return "POST", "/message", bulk_body(ds), {}
    if op == "find_deep":
        return "GET", f"/message?limit={PAGE}&cursor_next={st.deep_cursor}", None, {}
    if op == "get":
        return "GET", f"/message/{ds.readable_sample[i % len(ds.readable_sample)]}", None, {}
    if op == "create":
        lid = ds.postable_lists[i % len(ds.postable_lists)]
        return "POST", "/message", {"list_id": lid, "subject": f"bench {i}",
                                    "content": "created by the benchmark",
                                    "privacy": "member"}, {}
    if op == "update":
        mid = st.own[i % len(st.own)]
        return "PUT", f"/message/{mid}", {"subject": f"edited {i}"}, \
            {"If-Match": st.etags.get(mid, "*")}
    if op == "login":
        return "POST", "/auth", {"username": ds.login_users[i % len(ds.login_users)],
                                 "password": dataset.PASSWORD}, {}
    raise KeyError(op)


EXPECTED = {"create": 201, "login": 201, "bulk_create": 201}


def run_op(t: Target, op: str, ds: dataset.Dataset, st: OpState) -> tuple[int, float]:
    """One request: (SQL statements, CPU milliseconds of this process).

    CPU time, not wall time: this machine is shared, and a probe compares the work each
    app does per request (the Redis and database servers' work is not in it, but the
    SQLite library's is)."""
    method, path, body, headers = request_for(op, ds, st)
    before = len(t.queries)
    start = time.process_time()
    status, resp_headers, doc = t.call(method, path, body, headers,
                                       token="" if op == "login" else None)
    ms = (time.process_time() - start) * 1e3
    if status != EXPECTED.get(op, 200):
        raise RuntimeError(f"{t.name} {op}: HTTP {status} {doc}")
    if op == "update":
        st.etags[doc["id"]] = resp_headers["ETag"]
    return len(t.queries) - before, ms


def prepare(t: Target, ds: dataset.Dataset, deep: int, own: list[str]) -> OpState:
    """Log in and find the deep page's cursor; ``own``: the records this app updates
    (disjoint between apps, so that neither invalidates the other's ETags)."""
    t.token = t.login()
    st = OpState(own=own)
    st.deep_cursor, st.deep_page = deep_cursor(t, ds, deep)
    return st


def count_queries(targets: list[Target], ds: dataset.Dataset, states: list[OpState],
                  n: int = 20, ops=None) -> dict[str, dict[str, dict[str, float]]]:
    """SQL statements per request and CPU ms per request, per app and operation; the apps
    take turns request by request, so a change in the machine's speed hits both alike."""
    out: dict[str, dict[str, dict[str, float]]] = {t.name: {} for t in targets}
    for op in ops or OPERATIONS:
        runs: dict[str, list[tuple[int, float]]] = {t.name: [] for t in targets}
        for _ in range(n):
            for t, st in zip(targets, states, strict=True):
                runs[t.name].append(run_op(t, op, ds, st))
        for name, rs in runs.items():
            out[name][op] = {"queries": round(statistics.mean(q for q, _ in rs), 2),
                             "max_queries": max(q for q, _ in rs),
                             "cpu_ms": round(statistics.median(ms for _, ms in rs), 3)}
    return out


# -- both apps agree, and agree with the data set ----------------------------------------

def check_all(targets: list[Target], ds: dataset.Dataset,
              states: list[OpState]) -> dict[str, Any]:
    """:func:`check_same_answers` of the first app against each of the others."""
    out: dict[str, Any] = {}
    created = 0
    for t, st in zip(targets[1:], states[1:], strict=True):
        out = check_same_answers(targets[0], t, ds, states[0], st, created)
        created += 2 * 3  # each check's bulk create: three messages each, readable
    return out


def check_same_answers(a: Target, b: Target, ds: dataset.Dataset, sa: OpState,
                       sb: OpState, created: int = 0) -> dict[str, Any]:
    """Both apps return the same records for page 1, the deep page and gets, with the
    count the data set predicts (plus ``created``: readable messages that earlier checks
    added). Raises on the first difference."""
    expected = ds.readable_count + created
    problems = []
    docs = {}
    for t, st in ((a, sa), (b, sb)):
        docs[t.name] = {
            "page1": t.call("GET", "/message?limit=25")[2],
            "deep": t.call("GET", f"/message?limit={PAGE}&cursor_next={st.deep_cursor}")[2],
            "gets": [t.call("GET", f"/message/{mid}")[2] for mid in ds.readable_sample[:50]],
            "unreadable": t.call("GET", "/message/x-not-a-message")[0],
            **{op: t.call("GET", path)[2] for op, path in FIND_PATHS.items()
               if op not in ("find_page1", "find_recount")},
        }
    da, db = docs[a.name], docs[b.name]
    for op in FIND_PATHS:
        if op in ("find_page1", "find_recount"):  # (page 1 is compared above)
            continue
        x, y = ({k: v for k, v in d[op].items() if k != "cursor_next"} for d in (da, db))
        if x != y or ("cursor_next" in da[op]) != ("cursor_next" in db[op]):
            problems.append(f"{op}: the two apps answer differently, e.g. " +
                            _first_difference(x, y))
    if "count" in da["find_count_none"]:
        problems.append("count=none still counted")
    # a bulk create of three (each app its own): the same records but for id and times
    made = {}
    for t in (a, b):
        status, _, doc = t.call("POST", "/message", bulk_body(ds, 3))
        if status != 201:
            raise RuntimeError(f"{t.name} bulk create: HTTP {status} {doc}")
        made[t.name] = [{k: v for k, v in item.items() if k not in ("id", "created")}
                        for item in doc["items"]] + [doc["count"]]
    if made[a.name] != made[b.name]:
        problems.append("bulk create: " + _first_difference(made[a.name], made[b.name]))
    if da["page1"]["count"] != expected or db["page1"]["count"] != expected:
        problems.append(f"count: {a.name} {da['page1']['count']}, {b.name} "
                        f"{db['page1']['count']}, data set {expected}")
    for key in ("page1", "deep"):
        if da[key]["items"] != db[key]["items"]:
            problems.append(f"{key}: the two apps return different items")
    if da["gets"] != db["gets"]:
        diff = next((x, y) for x, y in zip(da["gets"], db["gets"], strict=False) if x != y)
        keys = sorted(k for k in set(diff[0]) | set(diff[1]) if diff[0].get(k) != diff[1].get(k))
        problems.append("get: the two apps return different records, e.g. "
                        + ", ".join(f"{k}: {diff[0].get(k)!r} / {diff[1].get(k)!r}"
                                    for k in keys))
    if sa.deep_page != sb.deep_page:
        problems.append(f"deep page: {a.name} reached {sa.deep_page}, {b.name} {sb.deep_page}")
    if da["unreadable"] != 404 or db["unreadable"] != 404:
        problems.append("get of a missing record did not answer 404")
    if problems:
        raise RuntimeError("the apps disagree:\n  " + "\n  ".join(problems))
    return {"count": expected, "deep_page": sa.deep_page,
            "page1_ids": [i["id"] for i in da["page1"]["items"]][:3]}


def _first_difference(x: Any, y: Any, where: str = "") -> str:
    """Where two JSON documents first differ, and the two values there."""
    if isinstance(x, dict) and isinstance(y, dict):
        for k in sorted(set(x) | set(y)):
            if x.get(k, "<absent>") != y.get(k, "<absent>"):
                return _first_difference(x.get(k, "<absent>"), y.get(k, "<absent>"),
                                         f"{where}.{k}")
    if isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        for i, (u, v) in enumerate(zip(x, y, strict=True)):
            if u != v:
                return _first_difference(u, v, f"{where}[{i}]")
    return f"{where or 'document'}: {str(x)[:200]!r} / {str(y)[:200]!r}"


# -- command line ---------------------------------------------------------------------------

@contextlib.contextmanager
def redis_server(work: Path):
    from serving_stack import Processes, start_redis

    procs = Processes()
    try:
        yield start_redis(procs, work, None)[0]
    finally:
        procs.stop_all()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", default="", help="SQLAlchemy URL (default: a new SQLite file)")
    ap.add_argument("--scale", default="tiny", choices=("tiny", "medium", "full"))
    ap.add_argument("-n", type=int, default=100, help="requests per operation")
    ap.add_argument("--profile", choices=tuple(OPERATIONS), help="profile one operation")
    ap.add_argument("--app", default="apicrud", choices=("apicrud",) + BASELINES)
    ap.add_argument("--ops", default="", help="comma-separated operations (default: all)")
    ap.add_argument("--dump", metavar="FILE",
                    help="with --cprofile: also write the raw statistics (pstats) to FILE")
    ap.add_argument("--cprofile", action="store_true",
                    help="with --profile: cProfile's table by own time, not pyinstrument")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="apicrud-probe-") as tmp, \
            redis_server(Path(tmp)) as redis_url:
        settings = apicrud_settings(args.db or None, tmp, redis_url)
        t0 = time.monotonic()
        ds = dataset.seed(settings, dataset.Scale.named(args.scale))
        print(f"seeded {ds.counts} in {time.monotonic() - t0:.1f} s; bench user reads "
              f"{ds.readable_count} messages", flush=True)
        targets = [apicrud_target(settings)] + [baseline_target(settings, b) for b in BASELINES]
        try:
            return probe(args, ds, targets)
        finally:
            for t in targets:
                services = t.app.extensions.get("apicrud")
                if services is not None:
                    services.close()


def print_packages(stats: Any, n: int) -> None:
    """Own time per request, summed by package (sqlalchemy, redis, werkzeug, apicrud's
    modules...): where the CPU of a request goes, at a glance."""
    by: dict[str, float] = {}
    for (filename, _, name), row in stats.stats.items():
        if "site-packages/" in filename:
            key = filename.split("site-packages/")[1].split("/")[0].removesuffix(".py")
        elif "/apicrud/" in filename:
            key = "apicrud." + filename.split("/apicrud/")[-1].removesuffix(".py").replace("/", ".")
        elif filename == "~":
            key = name.split(" of ")[-1].strip("'>").split("'")[0] if " of " in name else name
        else:
            key = Path(filename).stem
        by[key] = by.get(key, 0.0) + row[2]
    total = sum(by.values())
    print(f"own time per request by package (ms; total {total / n * 1000:.3f}):")
    for key, t in sorted(by.items(), key=lambda kv: -kv[1])[:30]:
        print(f"  {key:<40}{t / n * 1000:>8.3f}")


def probe(args, ds: dataset.Dataset, targets: list[Target]) -> int:
    deep = DEEP_PAGE if args.scale == "full" else 40
    states = [prepare(t, ds, deep, ds.own_messages[k::len(targets)])
              for k, t in enumerate(targets)]
    print("same answers:", check_all(targets, ds, states))
    if args.profile:
        t, st = next((t, s) for t, s in zip(targets, states, strict=True) if t.name == args.app)
        for _ in range(20):
            run_op(t, args.profile, ds, st)
        if args.cprofile:
            import cProfile
            import pstats

            with cProfile.Profile() as cprof:
                for _ in range(args.n):
                    run_op(t, args.profile, ds, st)
            stats = pstats.Stats(cprof)
            if args.dump:
                stats.dump_stats(args.dump)
            stats.sort_stats("tottime").print_stats(45)
            print_packages(stats, args.n)
            return 0
        from pyinstrument import Profiler

        with Profiler(interval=0.0002) as prof:
            for _ in range(args.n):
                run_op(t, args.profile, ds, st)
        print(prof.output_text(unicode=True, color=False, show_all=False))
        return 0
    print(f"{'operation':<22}" + "".join(f"{t.name + ' q':>12}{t.name + ' cpu ms':>16}"
                                         for t in targets)
          + "".join(f"{'ratio ' + t.name:>16}" for t in targets[1:]))
    ops = [o for o in args.ops.split(",") if o] or list(OPERATIONS)
    unknown = sorted(set(ops) - set(OPERATIONS))
    if unknown:
        raise SystemExit(f"unknown operations: {', '.join(unknown)}")
    counted = count_queries(targets, ds, states, args.n, ops)
    results = [counted[t.name] for t in targets]
    for op in ops:
        print(f"{op:<22}" + "".join(f"{r[op]['queries']:>12}{r[op]['cpu_ms']:>16.3f}"
                                    for r in results)
              + "".join(f"{r[op]['cpu_ms'] / results[0][op]['cpu_ms']:>16.2f}"
                        for r in results[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
