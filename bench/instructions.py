#!/usr/bin/env python3
"""Instructions per request: apicrud against the expert baseline, counted by callgrind.

    .venv/bin/python bench/instructions.py [--db URL] [--scale tiny|medium|full] [-n 40]
        [--ops find_page1,find_count_none,get] [--out bench/results/instructions]

Served req/s and CPU time move with the machine: on a shared VM the same loop can take
1.8 times as long from one second to the next, and a served run's rounds differ by as
much. valgrind's callgrind counts the instructions a process executes instead, which do
not depend on how busy the machine is: the same code, data and inputs give the same
count within a fraction of a percent. That makes it the steady measure of what a change
to the request path saves, beside the served figures of ``bench/crud.py``.

How: this script runs itself under ``valgrind --tool=callgrind --instr-atstart=no``
(nothing is counted while the data set is seeded and the apps start). The child builds
apicrud and the expert in one process on the same database and Redis
(``bench/probe.py``: the same data set, login and answers check), runs each operation
a few times on each, freezes the heap it has (so a full collection of the start-up
objects does not land in one sample), then for each operation and app: one request, a
collection, callgrind's counters zeroed, ``-n`` requests, the counters written out. The
counts include the test client's work, which is the same for both apps; they leave out
the database and Redis servers (other processes) and the time spent waiting for them.

What it cannot show: cache misses and branch mispredictions (an instruction is an
instruction), and work outside the process. The served run measures those.

Needs valgrind with its headers (Debian's ``valgrind`` package) and a C compiler: the
counters are started, zeroed and written through callgrind's client requests, from a
three-function library this script compiles on first use.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import probe  # noqa: E402

DEFAULT_OPS = ("find_page1", "find_count_none", "get", "create", "update")
SHIM = r"""
#include <valgrind/callgrind.h>
void ac_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void ac_zero(void) { CALLGRIND_ZERO_STATS; }
void ac_dump(const char *label) { CALLGRIND_DUMP_STATS_AT(label); }
"""
TRIGGER = re.compile(r"^desc: Trigger: Client Request: (\S+)$", re.M)
SUMMARY = re.compile(r"^(?:summary|totals): (\d+)", re.M)


def build_shim(work: Path) -> Path:
    """The client-request library (callgrind.h's macros are inline assembly: C only)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("bench/instructions.py needs a C compiler (cc or gcc)")
    if not Path("/usr/include/valgrind/callgrind.h").exists():
        raise SystemExit("bench/instructions.py needs valgrind's headers "
                         "(Debian: apt-get install valgrind)")
    src, lib = work / "shim.c", work / "libshim.so"
    src.write_text(SHIM, encoding="utf-8")
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib


# -- the child, under callgrind ---------------------------------------------------------

def child(args: argparse.Namespace) -> int:
    import dataset

    shim = ctypes.CDLL(args.shim)
    ops = [o for o in args.ops.split(",") if o]
    with tempfile.TemporaryDirectory(prefix="apicrud-instr-") as tmp, \
            probe.redis_server(Path(tmp)) as redis_url:
        settings = probe.apicrud_settings(args.db or None, tmp, redis_url)
        ds = dataset.seed(settings, dataset.Scale.named(args.scale))
        targets = [probe.apicrud_target(settings), probe.baseline_target(settings, "expert")]
        try:
            states = [probe.prepare(t, ds, 40, ds.own_messages[k::2])
                      for k, t in enumerate(targets)]
            probe.check_all(targets, ds, states)
            for op in ops:  # warm: statements compiled, memos filled, pools opened
                for t, st in zip(targets, states, strict=True):
                    for _ in range(10):
                        probe.run_op(t, op, ds, st)
            gc.collect()
            gc.freeze()
            shim.ac_start()
            for op in ops:
                for t, st in zip(targets, states, strict=True):
                    probe.run_op(t, op, ds, st)
                    gc.collect()
                    shim.ac_zero()
                    for _ in range(args.n):
                        probe.run_op(t, op, ds, st)
                    shim.ac_dump(f"{op}:{t.name}".encode())
        finally:
            for t in targets:
                services = t.app.extensions.get("apicrud")
                if services is not None:
                    services.close()
    return 0


# -- the parent: run the child, read its dumps, write the report -------------------------

def counts(out_dir: Path, n: int) -> dict[str, dict[str, float]]:
    """{operation: {app: instructions per request}} from callgrind's dump files."""
    found: dict[str, dict[str, float]] = {}
    for path in sorted(out_dir.glob("callgrind.out*")):
        text = path.read_text(encoding="utf-8", errors="replace")
        trigger, total = TRIGGER.search(text), SUMMARY.search(text)
        if trigger is None or total is None:
            continue  # the final dump at exit, or the part before instrumentation
        op, _, app = trigger.group(1).partition(":")
        found.setdefault(op, {})[app] = int(total.group(1)) / n
    return found


def report(found: dict[str, dict[str, float]], args: argparse.Namespace,
           seconds: float) -> str:
    db = args.db or "sqlite (a new file)"
    lines = [
        "# Instructions per request: apicrud vs the expert baseline (callgrind)", "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · {platform.machine()} · "
        f"Python {platform.python_version()} · database {db} · data set {args.scale} · "
        f"{args.n} requests per operation and app, in one process · run took "
        f"{seconds:.0f} s under valgrind", "",
        f"Source: {probe_source()}. Command: `" + " ".join(
            [".venv/bin/python", "bench/instructions.py", *args.argv]) + "`; "
        "PYTHONHASHSEED=0 (hashing, and so every dict's layout, the same from run to "
        "run).", "",
        "| operation | apicrud | expert | apicrud / expert |",
        "|---|---:|---:|---:|",
    ]
    for op in [o for o in args.ops.split(",") if o]:
        row = found.get(op, {})
        a, e = row.get("apicrud"), row.get("expert")
        if a is None or e is None:
            lines.append(f"| {probe.OPERATIONS.get(op, op)} | - | - | missing |")
            continue
        lines.append(f"| {probe.OPERATIONS.get(op, op)} | {a:,.0f} | {e:,.0f} | "
                     f"**{a / e:.3f}** |")
    lines += ["", "Instructions executed by the Python process per request (the test "
              "client's included, the same for both apps; the database's and Redis's "
              "work is in their own processes and not counted). Counted with a frozen "
              "start-up heap and after a collection, so a full collection of the start-up "
              "objects falls in no sample; the young collections each app's allocations "
              "cause are counted.", ""]
    return "\n".join(lines)


def probe_source() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--",
                                "apicrud", "bench"], capture_output=True, text=True,
                               check=True).stdout.strip()
        return f"working tree at {rev}" + (" with changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "a working tree (no git)"


def parent(args: argparse.Namespace) -> int:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("bench/instructions.py needs valgrind (Debian: apt-get install "
                         "valgrind)")
    with tempfile.TemporaryDirectory(prefix="apicrud-callgrind-") as work:
        work_dir = Path(work)
        shim = build_shim(work_dir)
        cmd = [valgrind, "--tool=callgrind", "--instr-atstart=no", "--dump-instr=no",
               f"--callgrind-out-file={work_dir}/callgrind.out.%p", sys.executable,
               str(Path(__file__).resolve()), "--child", "--shim", str(shim),
               "--db", args.db, "--scale", args.scale, "-n", str(args.n),
               "--ops", args.ops]
        started = time.monotonic()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": "0"})
        seconds = time.monotonic() - started
        if done.returncode != 0:
            sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
            raise SystemExit(f"the child under callgrind failed (exit {done.returncode})")
        found = counts(work_dir, args.n)
    text = report(found, args, seconds)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text(text, encoding="utf-8")
        out.with_suffix(".json").write_text(json.dumps(
            {"args": vars(args) | {"argv": args.argv}, "instructions": found,
             "seconds": round(seconds, 1)}, indent=2, default=str) + "\n",
            encoding="utf-8")
    missing = [op for op in args.ops.split(",") if op and len(found.get(op, {})) != 2]
    if missing:
        raise SystemExit(f"no counts for {', '.join(missing)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", default="", help="SQLAlchemy URL (default: a new SQLite file)")
    ap.add_argument("--scale", default="medium", choices=("tiny", "medium", "full"))
    ap.add_argument("-n", type=int, default=40, help="requests per operation and app")
    ap.add_argument("--ops", default=",".join(DEFAULT_OPS))
    ap.add_argument("--out", default="", help="write OUT.md and OUT.json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--shim", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(raw)
    args.argv = raw
    unknown = sorted({o for o in args.ops.split(",") if o} - set(probe.OPERATIONS))
    if unknown:
        raise SystemExit(f"unknown operations: {', '.join(unknown)}")
    return child(args) if args.child else parent(args)


if __name__ == "__main__":
    sys.exit(main())
