"""The README's tour of the events example, run as written against `apicrud serve`
started in the project folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import events_harness as h


def _tour() -> str:
    text = Path(h.ROOT, "README.md").read_text(encoding="utf-8")
    section = text.split("## Tour", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)


def test_readme_starts_the_project_with_apicrud_serve():
    text = Path(h.ROOT, "README.md").read_text(encoding="utf-8")
    first = re.search(r"```sh\n(.*?)```", text, re.DOTALL).group(1).splitlines()
    assert [line.split("#")[0].strip() for line in first] == ["apicrud serve"]


def test_readme_tour_runs_as_written(tmp_path):
    password = "tour-" + os.urandom(6).hex()
    env = h.service_env(str(tmp_path), APICRUD_ADMIN_PASSWORD=password)
    with h.serve(env) as (base, env):
        script = _tour().replace("http://127.0.0.1:8080/api/v1", base)
        script = script.replace("'paste the password apicrud serve printed'", f"'{password}'")
        # `apicrud` as installed next to this Python
        env = {**env, "PATH": os.path.dirname(sys.executable) + os.pathsep + env["PATH"]}
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=h.ROOT,
                                env=env, capture_output=True, text=True, timeout=180)
    out = result.stdout
    assert result.returncode == 0, result.stderr + out
    lines = out.splitlines()
    assert lines[0] == "404", out  # a draft event is nobody else's business
    assert '"state":"published"' in lines[1] and '"rbac":"cdhlru"' in lines[1], out
    assert '"errors": {"state": "may not be written by you"}' in out and '"status": 403' in out
    assert '{"items":[],"count":0}' in out  # no speaker of a pending session
    speaker = next(line for line in lines if line.startswith('{"id"') and '"Sam"' in line)
    assert '"name":"Sam"' in speaker and "email" not in speaker and '"rbac":"lr"' in speaker
    assert "filter: unknown field 'email'" in out
    assert out.count('{"items":[],"count":0}') == 2, out  # q searches no hidden field
    settings = lines[-1]
    assert '"app_name":"Events"' in settings and "analytics_key" not in settings, out
