"""Compile the operations of a bundled spec into request validators, once at start-up.

Each :class:`Operation` knows its parameters (with string-to-type coercion), its JSON
body validator and its security. Validation failures become 400 problem documents that
name the parameter or field.

Two checks apply to every resource, beyond what JSON Schema says:

- ``format: date-time`` values must be ISO 8601 date-times that every backend can
  store once made UTC: from ``1000-01-01T00:00:00Z`` to ``9999-12-31T23:59:59.999999Z``
  (MariaDB's DATETIME range; ``9999-12-31T23:59:59-12:00`` is past it);
- a create or update body is checked against the columns it is written to
  (:meth:`Operation.bind_columns`): integers within the column's integer type, finite
  numbers, text and numbers within a string column's length, date-times as above. So a
  value the database would refuse (a 500) or silently mangle is a 400 naming the field.
"""

from __future__ import annotations

import copy
import functools
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import jsonschema_rs
from jsonschema import Draft202012Validator, FormatChecker
from sqlalchemy import BigInteger, DateTime, Float, Integer, Numeric, SmallInteger, String

from apicrud.db.base import naive_utc
from apicrud.errors import ValidationProblem
from apicrud.i18n import N_, N_as
from apicrud.spec.loader import dereference

if TYPE_CHECKING:
    from jsonschema import ValidationError
    from werkzeug.datastructures import Headers, MultiDict

METHODS = ("get", "put", "post", "delete", "patch")
_FORMATS = FormatChecker()

#: the date-times every backend stores (naive UTC): MariaDB's DATETIME range
DATETIME_MIN = datetime(1000, 1, 1)
DATETIME_MAX = datetime(9999, 12, 31, 23, 59, 59, 999999)
DATETIME_RANGE = N_("out of range (1000-01-01T00:00:00Z to 9999-12-31T23:59:59Z)")


def parse_datetime(value: str) -> tuple[datetime | None, str | None]:
    """(naive UTC datetime, None), or (None, why not) for text that is not a date-time
    every backend can store. Text without an offset is taken as UTC."""
    if not isinstance(value, str) or len(value) > 64:
        return None, N_("not an ISO 8601 date-time")
    try:
        parsed = naive_utc(value.strip().replace("z", "+00:00"))
    except ValueError:
        return None, "not an ISO 8601 date-time"
    except OverflowError:  # 9999-12-31T23:59:59-12:00 is in year 10000 in UTC
        return None, DATETIME_RANGE
    if not DATETIME_MIN <= parsed <= DATETIME_MAX:
        return None, DATETIME_RANGE
    return parsed, None


@_FORMATS.checks("date-time")
def _is_datetime(value: Any) -> bool:
    return not isinstance(value, str) or parse_datetime(value)[1] is None


_INT_RANGES = ((SmallInteger, 16), (BigInteger, 64), (Integer, 32))


def column_problem(column: Any, value: Any) -> str | None:
    """Why ``value`` cannot be stored in ``column`` (an attribute or Column), or None."""
    if value is None:
        return None
    kind = getattr(column, "type", None)
    if kind is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return N_("not a finite number")
    if isinstance(kind, Integer) and isinstance(value, int) and not isinstance(value, bool):
        bits = next(b for t, b in _INT_RANGES if isinstance(kind, t))
        if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
            return N_("out of range (a %(bits)s-bit integer)", bits=bits)
    elif isinstance(kind, (Float, Numeric)) and isinstance(value, (int, float)) \
            and not isinstance(value, bool):
        if abs(value) > 1.7976931348623157e308:
            return N_("out of range")
    elif isinstance(kind, String) and kind.length:
        if isinstance(value, str) and len(value) > kind.length and not _references(column):
            return N_("longer than %(count)s characters", count=kind.length)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and \
                len(str(value)) > kind.length:
            return N_("out of range")
    elif isinstance(kind, DateTime) and isinstance(value, str):
        return parse_datetime(value)[1]
    return None


def _table_column(attr: Any) -> Any:
    """The table Column a mapped attribute reads (the attribute itself if none)."""
    columns = getattr(getattr(attr, "property", None), "columns", None)
    return columns[0] if columns else attr


def _references(column: Any) -> bool:
    """Whether the column holds another record's id: a too long one names no record, and
    the reference check answers that (404 for the field, as for any unknown id)."""
    prop = getattr(column, "property", None)
    columns = getattr(prop, "columns", None) or [column]
    return any(getattr(c, "foreign_keys", None) for c in columns)


def _short_format_message(err: ValidationError) -> str | None:
    if err.validator == "format" and err.validator_value == "date-time" and \
            isinstance(err.instance, str):
        return parse_datetime(err.instance)[1]
    return None


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
            raise ValidationProblem({self.name: N_("given more than once")})
        return _coerce_scalar(raw[0], self.schema, self.name)


def schema_types(schema: dict[str, Any], untyped: str | list[str] = "string") -> list[str]:
    """The JSON Schema types ``schema`` allows, as a list; ``untyped`` when it names none."""
    t = schema.get("type", untyped)
    return t if isinstance(t, list) else [t]


def _coerce_scalar(value: str, schema: dict[str, Any], name: str) -> Any:
    types = schema_types(schema)
    try:
        if "integer" in types:
            return int(value)
        if "number" in types:
            return float(value)
    except ValueError:
        raise ValidationProblem({name: N_("%(value)s is not a %(type)s",
                                            value=repr(value[:40]), type=types[0])}) from None
    if "boolean" in types:
        low = value.lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        raise ValidationProblem({name: N_("%(value)s is not a boolean",
                                        value=repr(value[:40]))})
    return value


def _error_field(err: ValidationError, prefix: str = "") -> str:
    path = [str(p) for p in err.absolute_path]
    if err.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", err.message)
        path.append(missing[0] if missing else "?")
    elif err.validator == "additionalProperties":
        extra = re.findall(r"'([^']+)'", err.message)
        if extra:
            path.append(extra[0])
    return ".".join(path) or prefix or "body"


def _short_message(err: ValidationError) -> str:
    formatted = _short_format_message(err)
    if formatted:
        return formatted
    if err.validator == "additionalProperties":
        return N_("unknown field")
    if err.validator == "required":
        return N_("is required")
    msg = err.message
    msg = msg if len(msg) <= 200 else msg[:197] + "..."
    return _marked(err, msg)


#: names of the common string formats, in words for users (translated with the message)
_FORMAT_NAMES = {"email": N_("email address"), "date-time": N_("date and time"),
                 "date": N_("date"), "uri": N_("URI"), "uuid": N_("UUID")}


def _marked(err: ValidationError, english: str) -> str:
    """jsonschema's English message, translatable for the common keywords (the
    offending value is left out of the translations: it may be long)."""
    keyword = err.validator
    limit: Any = err.validator_value  # the keyword's value in the schema: any JSON
    if keyword == "type":
        types = limit if isinstance(limit, list) else [limit]
        return N_as(english, "is not of type %(type)s", type=", ".join(map(str, types)))
    if keyword == "minLength":
        return N_as(english, "is shorter than %(limit)s characters", limit=limit)
    if keyword == "maxLength":
        return N_as(english, "is longer than %(limit)s characters", limit=limit)
    if keyword in ("minimum", "exclusiveMinimum"):
        return N_as(english, "is less than the minimum of %(limit)s", limit=limit)
    if keyword in ("maximum", "exclusiveMaximum"):
        return N_as(english, "is greater than the maximum of %(limit)s", limit=limit)
    if keyword == "enum":
        return N_as(english, "is not one of the allowed values")
    if keyword == "pattern":
        return N_as(english, "does not match the pattern %(pattern)s", pattern=limit)
    if keyword == "format":
        return N_as(english, "is not a valid %(format)s",
                    format=_FORMAT_NAMES.get(limit, limit))
    if keyword in ("minItems", "maxItems"):
        return N_as(english, "has too few or too many items")
    return english


def validation_errors(validator: SchemaValidator, instance: Any,
                      prefix: str = "") -> dict[str, str]:
    """Map every schema violation to ``{field: message}`` (first message per field)."""
    out: dict[str, str] = {}
    for err in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        out.setdefault(_error_field(err, prefix), _short_message(err))
    return out


def schema_properties(schema: dict[str, Any]) -> dict[str, Any]:
    """The properties an object schema declares, its ``allOf`` parts' included (a create
    body is ``allOf: [{$ref: Resource}, {required: [...]}]``)."""
    props: dict[str, Any] = {}
    for part in schema.get("allOf") or []:
        if isinstance(part, dict):
            props.update(schema_properties(part))
    props.update(schema.get("properties") or {})
    return props


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
    #: body field -> the column it is written to (see :meth:`bind_columns`)
    columns: dict[str, Any] = field(default_factory=dict)
    #: the body may also be an array of objects (``oneOf: [object, {type: array, items:
    #: object}]``): each item is validated as the object is, errors named ``[i].field``
    accepts_array: bool = False
    #: the ``multipart/form-data`` body schema, when the operation takes one (uploads)
    multipart_schema: dict[str, Any] | None = None
    #: validates a multipart body's form fields (its ``format: binary`` fields left out)
    multipart_validator: Any = None
    #: the body is raw bytes (``application/octet-stream``), read by the controller
    binary_body: bool = False
    #: how a caller may authenticate it (Principal.method values), from its ``security``
    #: (see apicrud.auth.schemes); None: any way
    credential_methods: frozenset[str] | None = None

    def freeze(self) -> None:
        """Make the compiled operation read-only (create_app does, once the handler and
        columns are bound): a request can't change what the next one is checked against."""
        self.params = tuple(self.params)  # type: ignore[assignment]
        self.columns = MappingProxyType(dict(self.columns))  # type: ignore[assignment]
        self.extensions = MappingProxyType(dict(self.extensions))  # type: ignore[assignment]
        object.__setattr__(self, "_frozen", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if self.__dict__.get("_frozen"):
            raise AttributeError(f"operation {self.operation_id} is frozen: {name} is "
                                 "set at compilation only")
        object.__setattr__(self, name, value)

    @functools.cached_property
    def lists(self) -> bool:
        """A list: a GET that takes a filter or pages (limit), a collection or one under
        a record (a record's history); react-admin's list dialect applies to it."""
        return self.method == "get" and any(
            p.name in ("filter", "limit") and p.location == "query" for p in self.params)

    @functools.cached_property
    def query_names(self) -> frozenset[str]:
        """The names of the query parameters it takes (any other is refused)."""
        return frozenset(p.name for p in self.params if p.location == "query")

    def bind_columns(self, columns: dict[str, Any]) -> None:
        """Check this operation's body values against these columns (field -> column
        attribute): for operations whose body fields are written to a model as given."""
        props = schema_properties(self.body_schema or {})
        # the Column behind each mapped attribute: its type is a plain attribute there
        # (through the ORM attribute, each read is a proxied lookup: measurable in a bulk
        # create of 1,000 records)
        self.columns = {name: _table_column(col) for name, col in columns.items()
                        if name in props and getattr(col, "type", None) is not None}
    source: str = ""  # the spec file the path item is written in (for start-up problems)

    def parse_params(self, path_args: dict[str, str], query: MultiDict[str, str],
                     headers: Headers) -> dict[str, Any]:
        """Coerce and validate parameters; raise a 400 naming the first bad ones."""
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for param in self.params:
            if param.location == "path":
                raw = [path_args[param.name]] if param.name in path_args else []
            elif param.location == "query":
                # (getlist raises and catches a KeyError for each absent name)
                raw = query.getlist(param.name) if param.name in query else []
            elif param.location == "header":
                v = headers.get(param.name)
                raw = [v] if v is not None else []
            else:
                continue
            if not raw:
                if param.required:
                    errors[param.name] = N_("is required")
                elif "default" in param.schema:
                    values[param.name] = param.schema["default"]
                continue
            try:
                value = param.coerce(raw)
            except ValidationProblem as exc:
                errors.update(exc.errors)
                continue
            errs = validation_errors(param.validator, value, param.name)
            if errs:
                errors[param.name] = next(iter(errs.values()))
                continue
            values[param.name] = value
        known = self.query_names
        unknown = [k for k in query if k not in known]
        if unknown and not self.extensions.get("x-extra-query"):
            for k in unknown:
                errors[k[:64]] = N_("unknown query parameter")
        if errors:
            raise ValidationProblem(errors)
        return values

    def validate_body(self, body: Any, partial: bool = False) -> None:
        if self.body_validator is None:
            return
        if isinstance(body, list) and self.accepts_array:
            errors: dict[str, str] = {}
            for i, item in enumerate(body):
                for name, message in self._object_errors(item, partial).items():
                    errors.setdefault(f"[{i}].{name}" if name != "body" else f"[{i}]",
                                      message)
        else:
            errors = self._object_errors(body, partial)
        if errors:
            raise ValidationProblem(errors)

    def _object_errors(self, body: Any, partial: bool) -> dict[str, str]:
        validator = self.partial_body_validator if partial else self.body_validator
        errors = validation_errors(validator, body)
        if self.columns and isinstance(body, dict):
            for name, value in body.items():
                column = self.columns.get(name)
                problem = column_problem(column, value) if column is not None else None
                if problem:
                    errors.setdefault(name, problem)
        return errors


#: keywords jsonschema-rs may read otherwise than Python's jsonschema (regular
#: expressions: Rust's engine against Python's ``re``): a schema using one is validated
#: by Python's engine alone
_ENGINE_DEPENDENT = frozenset({"pattern", "patternProperties", "$dynamicRef", "$dynamicAnchor"})


#: the keywords of a plain string schema (a path's id: its type, lengths and a pattern)
_PLAIN_STRING = frozenset({"type", "minLength", "maxLength", "pattern", "description",
                           "title", "example", "examples", "default"})


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _plain_string(schema: dict[str, Any]) -> Callable[[Any], bool] | None:
    """For a plain string schema, a check that accepts exactly what Python's jsonschema
    finds valid (the type, the lengths in code points, ``re.search`` of the pattern, as
    its keywords do), without its machinery; None for any other schema."""
    if schema.get("type") != "string" or not schema.keys() <= _PLAIN_STRING:
        return None
    low, high, pattern = schema.get("minLength", 0), schema.get("maxLength"), \
        schema.get("pattern")
    if not _int(low) or (high is not None and not _int(high)) or \
            (pattern is not None and not isinstance(pattern, str)):
        return None
    search = re.compile(pattern).search if pattern is not None else None

    def accepts(value: Any) -> bool:
        return isinstance(value, str) and low <= len(value) and \
            (high is None or len(value) <= high) and (search is None or search(value) is not None)

    return accepts


class SchemaValidator:
    """Validation of one compiled schema by two engines: jsonschema-rs answers "valid"
    (about 40 times faster: 1.4 against 59 ms for 1,000 message bodies), and Python's
    jsonschema lists the violations of what it did not accept, so problem documents name
    the fields as before. jsonschema-rs checks each format with the function Python's
    checker uses (same answers); an input only goes through when Python's engine would
    find no fault (tests/unit/test_validation_engines.py compares the two)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        Draft202012Validator.check_schema(schema)
        self.schema = schema
        self.python = Draft202012Validator(schema, format_checker=_FORMATS)
        self.fast = None if _uses(schema, _ENGINE_DEPENDENT) else jsonschema_rs.validator_for(
            schema, validate_formats=True, formats={
                name: functools.partial(_FORMATS.conforms, format=name)
                for name in _FORMATS.checkers})
        # a plain string (a path's id has a pattern, which keeps jsonschema-rs out):
        # what it accepts is accepted at once; the rest goes to Python's engine
        self.plain = _plain_string(schema) if self.fast is None else None

    def iter_errors(self, instance: Any) -> Iterator[ValidationError]:
        if self.fast is not None and self.fast.is_valid(instance):
            return iter(())
        if self.plain is not None and self.plain(instance):
            return iter(())
        return self.python.iter_errors(instance)


def _uses(schema: Any, keywords: frozenset[str]) -> bool:
    """Whether any (sub)schema of ``schema`` has one of ``keywords``."""
    if isinstance(schema, dict):
        return bool(keywords & schema.keys()) or any(_uses(v, keywords)
                                                      for v in schema.values())
    if isinstance(schema, list):
        return any(_uses(v, keywords) for v in schema)
    return False


def _validator(schema: dict[str, Any]) -> SchemaValidator:
    return SchemaValidator(schema)


def compile_operations(spec: dict[str, Any],
                       sources: dict[str, str] | None = None) -> list[Operation]:
    """Build an :class:`Operation` for every path and method of a bundled spec.

    ``sources`` maps a path to the file it is written in (:func:`load_spec_with_sources`).
    """
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
                many = "array" in schema_types(schema) and loc == "query"
                compiled.append(Param(name, loc, bool(p.get("required", loc == "path")),
                                      schema, _validator(schema), many))
            body = op.get("requestBody")
            body_schema = multipart = None
            if body:
                body_schema = (body.get("content", {}).get("application/json") or {}).get("schema")
                multipart = (body.get("content", {}).get("multipart/form-data") or {}) \
                    .get("schema")
            security = op.get("security", global_security)
            accepts_array = False
            branches = body_schema.get("oneOf") if isinstance(body_schema, dict) else None
            if isinstance(branches, list) and len(branches) == 2:
                arrays = [b for b in branches if isinstance(b, dict) and
                          "array" in schema_types(b) and isinstance(b.get("items"), dict)]
                if len(arrays) == 1:
                    # one object or an array of them: validate objects (and each item)
                    # against the object schema, whose messages name the field
                    body_schema = next(b for b in branches if b is not arrays[0])
                    accepts_array = True
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
                source=(sources or {}).get(path, ""),
                accepts_array=accepts_array,
                multipart_schema=multipart,
                multipart_validator=_validator(form_fields(multipart)) if multipart else None,
                binary_body=bool(body and "application/octet-stream" in body.get("content", {})),
            ))
    return ops


def is_file_schema(schema: Any) -> bool:
    """Whether a property schema declares a file (``format: binary`` or a
    ``contentMediaType``, as OpenAPI 3.0 and 3.1 say it)."""
    return isinstance(schema, dict) and (schema.get("format") == "binary" or
                                         "contentMediaType" in schema)


def form_fields(schema: dict[str, Any]) -> dict[str, Any]:
    """A multipart body schema without its file properties: what its form fields are
    validated against."""
    out = copy.deepcopy(schema)
    files = [k for k, v in (out.get("properties") or {}).items() if is_file_schema(v)]
    for name in files:
        out["properties"].pop(name)
    if files and "required" in out:
        out["required"] = [r for r in out["required"] if r not in files]
    return out


def flask_rule(path: str) -> str:
    """``/person/{id}`` -> ``/person/<id>``."""
    return flask_rule_names(path)[0]


def flask_rule_names(path: str) -> tuple[str, dict[str, str]]:
    """The Werkzeug rule of a spec path, and the spec's name of each rule variable whose
    name had to change: Werkzeug takes only identifiers (``{pet-id}`` is ``<p0>``, and
    ``{"p0": "pet-id"}`` says so); identifiers stay as they are, with no entry."""
    names: dict[str, str] = {}

    def variable(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.isidentifier():
            return f"<{name}>"
        alias = f"p{len(names)}"
        while f"{{{alias}}}" in path:  # a spec parameter of that very name
            alias += "_"
        names[alias] = name
        return f"<{alias}>"

    return re.sub(r"{([^}]+)}", variable, path), names
