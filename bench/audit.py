#!/usr/bin/env python3
"""What the audit trail costs a write: the same app with ``audit_enabled`` on and off.

    .venv/bin/python bench/audit.py [--db URL] [--scale tiny|full] [-n 300]

Seeds the data set (bench/dataset.py), builds two apicrud apps in this process against
the same database and a Redis of its own (one with the audit trail, one without), and
runs ``POST /message`` and ``PUT /message/{id}`` with If-Match through Werkzeug's test
client, the two apps taking turns request by request (bench/probe.py's method: no
sockets, CPU time of this process, SQL statements counted). Prints, per operation, the
statements and the median CPU milliseconds of each, and the relative cost of auditing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import dataset  # noqa: E402
import probe  # noqa: E402

OPERATIONS = ("create", "update")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", default="", help="SQLAlchemy URL (default: a new SQLite file)")
    ap.add_argument("--scale", default="tiny", choices=("tiny", "full"))
    ap.add_argument("-n", type=int, default=300, help="requests per operation and app")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="apicrud-audit-bench-") as tmp, \
            probe.redis_server(Path(tmp)) as redis_url:
        settings = probe.apicrud_settings(args.db or None, tmp, redis_url)
        t0 = time.monotonic()
        ds = dataset.seed(settings, dataset.Scale.named(args.scale))
        print(f"seeded {ds.counts} in {time.monotonic() - t0:.1f} s", flush=True)
        on = probe.apicrud_target(settings)
        on.name = "audited"
        off = probe.apicrud_target(settings.replace(audit_enabled=False))
        off.name = "unaudited"
        targets = [off, on]
        try:
            states = []
            for k, t in enumerate(targets):
                t.token = t.login()
                states.append(probe.OpState(own=ds.own_messages[k::2]))
            for t, st in zip(targets, states, strict=True):  # warm up: caches, compiled statements
                for op in OPERATIONS:
                    for _ in range(20):
                        probe.run_op(t, op, ds, st)
            print(f"{'operation':<10}{'q off':>7}{'q on':>6}{'cpu ms off':>12}"
                  f"{'cpu ms on':>11}{'cost':>8}")
            for op in OPERATIONS:
                runs: dict[str, list[tuple[int, float]]] = {t.name: [] for t in targets}
                for _ in range(args.n):
                    for t, st in zip(targets, states, strict=True):
                        runs[t.name].append(probe.run_op(t, op, ds, st))
                (q_off, ms_off), (q_on, ms_on) = (
                    (statistics.mean(q for q, _ in runs[t.name]),
                     statistics.median(ms for _, ms in runs[t.name])) for t in targets)
                print(f"{op:<10}{q_off:>7.1f}{q_on:>6.1f}{ms_off:>12.3f}{ms_on:>11.3f}"
                      f"{(ms_on / ms_off - 1) * 100:>7.1f}%")
        finally:
            for t in targets:
                t.app.extensions["apicrud"].close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
