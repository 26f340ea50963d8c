#!/usr/bin/env python3
"""The cascade's cost: a find of tasks through Org > Project > Job (examples/projects),
beside a find of the caller's own records of the same size (no membership at all).

    .venv/bin/python bench/cascade.py [--tiny] [-n 200]

Seeds the example in a temporary folder (its own SQLite file and embedded Redis): one
org with P projects of J jobs of T tasks (the last project closed), a member of the org
who reads every task through the cascade, and an invitee of the org who reads the tasks
of the open projects only, and of them only ``name`` and ``job_id`` (rbac.yaml's last
task entry: a field rule, a condition two hops up, ``job.project.state``, and the
three-level cascade in one find); then times ``GET /task?limit=25`` as the member and as
the invitee, and ``GET /note?limit=25`` as the owner of as many notes, one request at a
time over loopback, and reports the median, p95 and SQL statements of each (the
example's test server counts them per request). Writes bench/results/cascade.md (not
with --tiny).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
EXAMPLE = ROOT / "examples" / "projects"
SUFFIX = "-bench-pw-4242"


def start(data_dir: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith("APICRUD_")}
    env.update(APICRUD_DATA_DIR=data_dir, PROJECTS_TEST_SUFFIX=SUFFIX, PYTHONPATH=str(ROOT),
               APICRUD_AUDIT_ENABLED="false", APICRUD_RATELIMIT_ENABLE="false")
    proc = subprocess.Popen([sys.executable, str(EXAMPLE / "tests" / "serve_counting.py"),
                             "owner", "member", "invitee"], cwd=EXAMPLE, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    info = json.loads(proc.stdout.readline())
    return proc, info["url"], info["uids"]


def login(url: str, name: str) -> requests.Session:
    resp = requests.post(url + "/auth", json={"username": name, "password": name + SUFFIX},
                         timeout=10)
    resp.raise_for_status()
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {resp.json()['token']}"
    return http


def post(http, url, path, body):
    resp = http.post(url + path, json=body, timeout=30)
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def timed(http, url: str, path: str, n: int) -> tuple[float, float, int]:
    times, statements = [], set()
    for _ in range(n):
        start_ = time.perf_counter()
        resp = http.get(url + path, params={"limit": 25}, timeout=30)
        times.append((time.perf_counter() - start_) * 1000)
        assert resp.status_code == 200 and len(resp.json()["items"]) == 25, resp.text
        statements.add(int(resp.headers["X-Test-Statements"]))
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], max(statements)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true", help="smoke run")
    parser.add_argument("-n", type=int, default=200)
    args, _ = parser.parse_known_args()  # make bench passes crud.py's options too
    projects, jobs, tasks = (3, 2, 8) if args.tiny else (5, 4, 25)
    n = 10 if args.tiny else args.n
    with tempfile.TemporaryDirectory() as data_dir:
        proc, url, uids = start(data_dir)
        try:
            owner, member = login(url, "owner"), login(url, "member")
            invitee = login(url, "invitee")
            org = post(owner, url, "/org", {"name": "bench"})
            for who in ("member", "invitee"):
                post(owner, url, "/orgmember", {"org_id": org, "uid": uids[who],
                                                "authorization": who})
            for p in range(projects):
                pid = post(owner, url, "/project", {
                    "name": f"p{p}", "org_id": org,
                    "state": "closed" if p == projects - 1 else "open"})
                for j in range(jobs):
                    jid = post(owner, url, "/job", {"name": f"j{j}", "project_id": pid})
                    for t in range(tasks):
                        post(owner, url, "/task", {"name": f"t{t}", "job_id": jid})
            for i in range(projects * jobs * tasks):
                post(member, url, "/note", {"title": f"n{i}"})
            rows = []
            for label, http, path in (("find of own notes (no membership)", member, "/note"),
                                      ("find of tasks through org > project > job", member,
                                       "/task"),
                                      ("the same, as an invitee: field rule + condition "
                                       "job.project.state + cascade", invitee, "/task")):
                timed(http, url, path, 3)  # warm the roles cache and the clause memo
                med, p95, stmts = timed(http, url, path, n)
                rows.append(f"| {label} | {med:.1f} | {p95:.1f} | {stmts} |")
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    total = projects * jobs * tasks
    report = "\n".join([
        f"# Cascade find ({projects} projects x {jobs} jobs x {tasks} tasks = {total} "
        f"tasks readable through one org membership, {total - jobs * tasks} of them in open "
        f"projects; {n} sequential requests, limit 25)",
        "", "| request | median ms | p95 ms | SQL statements |", "|---|---|---|---|",
        *rows, ""])
    print(report)
    if not args.tiny:
        (BENCH / "results" / "cascade.md").write_text(report)


if __name__ == "__main__":
    main()
