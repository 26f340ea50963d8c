"""The README's five-minute tour, run as written against a real `apicrud serve`."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from helpers import ROOT, stop_process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tour() -> str:
    text = Path(ROOT, "README.md").read_text(encoding="utf-8")
    section = text.split("## Five-minute tour", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def test_readme_opens_with_the_two_commands():
    text = Path(ROOT, "README.md").read_text(encoding="utf-8")
    first_block = re.search(r"```sh\n(.*?)```", text, re.S).group(1).splitlines()
    assert [line.split("#")[0].strip() for line in first_block] == ["make run", "make test"]


def test_readme_tour_runs_as_written(tmp_path):
    port = _free_port()
    password = "tour-" + os.urandom(6).hex()
    env = {k: v for k, v in os.environ.items() if not k.startswith("APICRUD_")
           and k not in ("REDIS_URL", "DATABASE_URL")}
    # the tour is written for the embedded defaults, as `make run` starts them
    env.update(APICRUD_DATA_DIR=str(tmp_path), APICRUD_PORT=str(port),
               APICRUD_ADMIN_PASSWORD=password, APICRUD_WORKERS="1")
    server = subprocess.Popen([sys.executable, "-m", "apicrud.cli", "serve"], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}/api/v1"
        for _ in range(150):
            try:
                if requests.get(base + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:  # not up yet, or still loading
                pass
            assert server.poll() is None, server.stdout.read().decode()
            time.sleep(0.2)
        script = _tour().replace("http://127.0.0.1:8080/api/v1", base)
        script = script.replace("'paste the password make run printed'", f"'{password}'")
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        out = result.stdout
        assert result.returncode == 0, result.stderr + out
        assert '"rbac":"cdghijlru"' in out and "ETag:" in out
        assert '"subject":"chapter 5"' in out and '"count":5' in out
        assert '"description":"books to read"' in out
        assert '"errors": {"colour": "unknown field"}' in out
        assert '"status":"disabled"' in out
        codes = [line for line in out.splitlines() if re.fullmatch(r"\d{3}", line)]
        assert codes == ["404", "204", "401"], out
    finally:
        stop_process(server)
