"""Every Redis key is named through apicrud.redis_keys: no module spells the namespace by
hand (the one place to change it, and to read what apicrud keeps in Redis)."""

from __future__ import annotations

import ast
import os
from pathlib import Path

from apicrud import redis_keys

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "apicrud")


def test_keys_are_namespaced():
    assert redis_keys.key("totp", "failures", "a1") == "apicrud:totp:failures:a1"
    assert redis_keys.prefix("grants") == "apicrud:grants:"


def test_no_module_spells_a_key_by_hand():
    found = []
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            path = os.path.join(folder, name)
            if not name.endswith(".py") or path.endswith("redis_keys.py"):
                continue
            tree = ast.parse(Path(path).read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                        node.value.startswith(("apicrud:", "mutex:")) and " " not in node.value:
                    found.append(f"{os.path.relpath(path, PACKAGE)}:{node.lineno}")
                if isinstance(node, ast.JoinedStr) and node.values and \
                        isinstance(node.values[0], ast.Constant) and \
                        str(node.values[0].value).startswith(("apicrud:", "mutex:")):
                    found.append(f"{os.path.relpath(path, PACKAGE)}:{node.lineno}")
    assert found == []
