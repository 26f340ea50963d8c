"""The README's tour, run as written against `apicrud serve` started in this folder."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tour() -> str:
    text = Path(ROOT, "README.md").read_text(encoding="utf-8")
    return re.search(r"```sh\n(.*?)```", text.split("## Tour", 1)[1], re.S).group(1)


def test_the_tour_runs_as_written(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    password = "tour-" + os.urandom(6).hex()
    env = {k: v for k, v in os.environ.items() if not k.startswith("APICRUD_")
           and k not in ("PYTHONPATH", "DATABASE_URL", "REDIS_URL")}
    framework = os.path.dirname(os.path.dirname(ROOT))
    env.update(APICRUD_DATA_DIR=str(tmp_path), APICRUD_PORT=str(port),
               APICRUD_HOST="127.0.0.1", APICRUD_ADMIN_PASSWORD=password,
               APICRUD_WORKERS="1", PYTHONPATH=framework)
    bindir = tmp_path / "bin"  # `apicrud` on PATH, as an installed package puts it
    bindir.mkdir()
    (bindir / "apicrud").write_text(f"#!/bin/sh\nexec {sys.executable} -m apicrud.cli \"$@\"\n")
    (bindir / "apicrud").chmod(0o755)
    env["PATH"] = f"{bindir}:{env.get('PATH', '')}"
    server = subprocess.Popen(["apicrud", "serve"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}/api/v1"
        for _ in range(300):
            assert server.poll() is None
            try:
                if requests.get(base + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:  # not up yet
                pass
            time.sleep(0.2)
        script = _tour().replace("API=http://127.0.0.1:8080/api/v1", f"API={base}") \
            .replace("PASSWORD='paste the password apicrud serve printed'",
                     f"PASSWORD='{password}'")
        out = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=180)
        assert out.returncode == 0, out.stdout + out.stderr
        lines = out.stdout.splitlines()
        assert lines[0] == "404" and lines[-1] == "404", out.stdout + out.stderr
        assert '"rbac":"cdlru"' in out.stdout.replace(" ", ""), out.stdout
        assert "cascade: manager of org" in out.stdout, out.stdout
        assert '"errors":{"file_id":"filenotfound"}' in out.stdout.replace(" ", ""), \
            out.stdout
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
