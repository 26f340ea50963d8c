"""Compile the operations of a bundled spec into request validators, once at start-up.

Each :class:`Operation` knows its parameters (with string-to-type coercion), its JSON
body validator and its security. Validation failures become 400 problem documents that
name the parameter or field.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from jsonschema import Draft202012Validator, FormatChecker

from apicrud.errors import BadRequest, ValidationProblem
from apicrud.spec.loader import dereference

METHODS = ("get", "put", "post", "delete", "patch")
_FORMATS = FormatChecker()


@dataclass
class Param:
    name: str
    location: str  # path, query, header
    required: bool
    schema: dict[str, Any]
    validator: Any
    many: bool  # array in the query string (id=a&id=b)

    def coerce(self, raw: list[str]) -> Any:
        if self.many:
            items = self.schema.get("items", {})
            return [_coerce_scalar(v, items, self.name) for v in raw]
        if len(raw) > 1:
            raise ValidationProblem({self.name: "given more than once"})
        return _coerce_scalar(raw[0], self.schema, self.name)


def _types(schema: dict[str, Any]) -> list[str]:
    t = schema.get("type", "string")
    return t if isinstance(t, list) else [t]


def _coerce_scalar(value: str, schema: dict[str, Any], name: str) -> Any:
    types = _types(schema)
    try:
        if "integer" in types:
            return int(value)
        if "number" in types:
            return float(value)
    except ValueError:
        raise ValidationProblem({name: f"{value[:40]!r} is not a {types[0]}"}) from None
    if "boolean" in types:
        low = value.lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        raise ValidationProblem({name: f"{value[:40]!r} is not a boolean"})
    return value


def _error_field(err, prefix: str = "") -> str:
    path = [str(p) for p in err.absolute_path]
    if err.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", err.message)
        path.append(missing[0] if missing else "?")
    elif err.validator == "additionalProperties":
        extra = re.findall(r"'([^']+)'", err.message)
        if extra:
            path.append(extra[0])
    return ".".join(path) or prefix or "body"


def _short_message(err) -> str:
    if err.validator == "additionalProperties":
        return "unknown field"
    if err.validator == "required":
        return "is required"
    msg = err.message
    return msg if len(msg) <= 200 else msg[:197] + "..."


def validation_errors(validator, instance: Any, prefix: str = "") -> dict[str, str]:
    """Map every schema violation to ``{field: message}`` (first message per field)."""
    out: dict[str, str] = {}
    for err in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        out.setdefault(_error_field(err, prefix), _short_message(err))
    return out


def strip_required(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of an object schema whose top level requires nothing (partial updates)."""
    out = copy.deepcopy(schema)
    out.pop("required", None)
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in out.get(key, []):
            if isinstance(sub, dict):
                sub.pop("required", None)
    return out


@dataclass
class Operation:
    path: str
    method: str
    operation_id: str
    spec: dict[str, Any]
    params: list[Param]
    body_schema: dict[str, Any] | None
    body_required: bool
    body_validator: Any
    partial_body_validator: Any
    security: list[dict[str, list[str]]]
    public: bool
    handler: Callable | None = None
    resource: str = ""
    action: str = ""
    extensions: dict[str, Any] = field(default_factory=dict)

    def parse_params(self, path_args: dict[str, str], query, headers) -> dict[str, Any]:
        """Coerce and validate parameters; raise a 400 naming the first bad ones."""
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for p in self.params:
            if p.location == "path":
                raw = [path_args[p.name]] if p.name in path_args else []
            elif p.location == "query":
                raw = query.getlist(p.name)
            elif p.location == "header":
                v = headers.get(p.name)
                raw = [v] if v is not None else []
            else:
                continue
            if not raw:
                if p.required:
                    errors[p.name] = "is required"
                elif "default" in p.schema:
                    values[p.name] = p.schema["default"]
                continue
            try:
                value = p.coerce(raw)
            except ValidationProblem as exc:
                errors.update(exc.errors)
                continue
            errs = validation_errors(p.validator, value, p.name)
            if errs:
                errors[p.name] = next(iter(errs.values()))
                continue
            values[p.name] = value
        known = {p.name for p in self.params if p.location == "query"}
        unknown = [k for k in query.keys() if k not in known]
        if unknown and not self.extensions.get("x-extra-query"):
            for k in unknown:
                errors[k[:64]] = "unknown query parameter"
        if errors:
            raise ValidationProblem(errors)
        return values

    def validate_body(self, body: Any, partial: bool = False) -> None:
        if self.body_validator is None:
            return
        validator = self.partial_body_validator if partial else self.body_validator
        errors = validation_errors(validator, body)
        if errors:
            raise ValidationProblem(errors)


def _validator(schema: dict[str, Any]):
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=_FORMATS)


def compile_operations(spec: dict[str, Any]) -> list[Operation]:
    """Build an :class:`Operation` for every path and method of a bundled spec."""
    ops: list[Operation] = []
    global_security = spec.get("security", [])
    for path, item in (spec.get("paths") or {}).items():
        item = dereference(item, spec)
        shared = {(p["name"], p["in"]): p for p in item.get("parameters", [])}
        for method in METHODS:
            op = item.get(method)
            if not op:
                continue
            params = dict(shared)
            params.update({(p["name"], p["in"]): p for p in op.get("parameters", [])})
            compiled = []
            for (name, loc), p in params.items():
                schema = p.get("schema", {"type": "string"})
                many = "array" in _types(schema) and loc == "query"
                compiled.append(Param(name, loc, bool(p.get("required", loc == "path")),
                                      schema, _validator(schema), many))
            body = op.get("requestBody")
            body_schema = None
            if body:
                body_schema = (body.get("content", {}).get("application/json") or {}).get("schema")
            security = op["security"] if "security" in op else global_security
            ops.append(Operation(
                path=path,
                method=method,
                operation_id=op.get("operationId", ""),
                spec=op,
                params=compiled,
                body_schema=body_schema,
                body_required=bool(body and body.get("required")),
                body_validator=_validator(body_schema) if body_schema else None,
                partial_body_validator=_validator(strip_required(body_schema))
                if body_schema else None,
                security=security,
                public=bool(op.get("x-public", False)),
                extensions={k: v for k, v in op.items() if k.startswith("x-")},
            ))
    return ops


def flask_rule(path: str) -> str:
    """``/person/{id}`` -> ``/person/<id>``."""
    return re.sub(r"{([^}]+)}", r"<\1>", path)


def bad_json(detail: str) -> BadRequest:
    return BadRequest(detail, errors={"body": detail})
