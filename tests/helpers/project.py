"""A project of the user's own, made with ``apicrud init`` and run with the CLI: what the
tests of connexion-style specs build (handlers, a path file, security schemes)."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str, cwd, env) -> subprocess.CompletedProcess:
    """``apicrud ARGS`` in ``cwd``, its output captured."""
    return subprocess.run([sys.executable, "-m", "apicrud.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def write_connexion_project(project: Path, handlers: dict[str, str], path_file: str,
                            paths_text: str, refs: dict[str, str],
                            schemes: dict[str, Any], **spec_keys: Any) -> None:
    """Add handler modules (name -> source), ``openapi/<path_file>`` and the paths
    (URL -> key in that file), security schemes and top-level keys to an init'ed project."""
    for name, text in handlers.items():
        (project / name).parent.mkdir(exist_ok=True)
        (project / name).write_text(textwrap.dedent(text).lstrip())
    (project / "openapi" / path_file).write_text(paths_text)
    root = project / "openapi" / "api.yaml"
    spec = yaml.safe_load(root.read_text())
    spec.update(spec_keys)
    spec["paths"].update({url: {"$ref": f"{path_file}#/{key}"} for url, key in refs.items()})
    spec["components"]["securitySchemes"].update(schemes)
    root.write_text(yaml.safe_dump(spec, sort_keys=False))
