"""Checks of the served OpenAPI document as a whole, before its operations are compiled.

Two kinds of problem are reported, each naming where it is (a JSON pointer into the
bundled document):

- what `openapi-spec-validator` finds against the OpenAPI 3.1 (or 3.0) meta-schema;
- keys without a value that a YAML flow mapping made by accident: in
  ``{type: string, description: base32, for typing into an app}`` the comma ends the
  description and ``for typing into an app`` becomes a key of its own. JSON Schema ignores
  unknown keywords, so no validator notices; the text is simply lost from the docs.

The result is remembered per document (by digest), so the many apps one process builds
(tests, gunicorn's preloading) pay for the check once.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: keys whose value may legitimately be null in an OpenAPI document
_NULL_ALLOWED = frozenset({"example", "default", "const", "enum", "examples", "value"})


def _pointer(path: list[Any]) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _stray_keys(node: Any, path: list[Any], out: dict[str, str]) -> None:
    """Keys without a value (out: key -> problem), depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = [*path, key]
            if value is None and key not in _NULL_ALLOWED and not str(key).startswith("x-"):
                out[f"{key!r}@{_pointer(here)}"] = (
                    f"spec {_pointer(here)}: key {key!r} has no value (a comma inside an "
                    "unquoted flow-mapping value? quote the text)")
            _stray_keys(value, here, out)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _stray_keys(value, [*path, i], out)


def _schema_errors(spec: dict[str, Any], stray: set[str]) -> list[str]:
    from openapi_spec_validator import OpenAPIV30SpecValidator, OpenAPIV31SpecValidator
    from referencing.exceptions import Unresolvable

    version = str(spec.get("openapi", ""))
    validator_class = OpenAPIV30SpecValidator if version.startswith("3.0") \
        else OpenAPIV31SpecValidator
    problems = []
    try:
        for err in validator_class(spec).iter_errors():
            message = err.message.strip().splitlines()[0]
            if any(key in message for key in stray):
                continue  # reported above, with the likely cause
            if len(message) > 300:
                message = message[:297] + "..."
            problems.append(f"spec {_pointer(list(err.path))}: {message}")
    except Unresolvable:
        pass  # a dangling $ref: the loader names it, with the file it is in
    return problems


_by_digest: dict[str, tuple[str, ...]] = {}


def document_problems(spec: dict[str, Any]) -> list[str]:
    """Every problem of the bundled document (empty when it is sound)."""
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()
    if digest not in _by_digest:
        if len(_by_digest) >= 16:
            _by_digest.clear()
        stray: dict[str, str] = {}
        _stray_keys(spec, [], stray)
        found = [*stray.values(),
                 *_schema_errors(spec, {key.partition("@")[0] for key in stray})]
        _by_digest[digest] = tuple(dict.fromkeys(found))
    return list(_by_digest[digest])
