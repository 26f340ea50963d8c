"""The two validation engines agree: jsonschema-rs never passes what Python's jsonschema
would refuse (spec/operations.py lets jsonschema-rs answer "valid" and asks Python's
engine for the errors of everything else).

Instances are drawn for every request body and parameter schema of the default spec:
objects with the schema's own fields (and unknown ones) holding values of every JSON
type, including strings shaped like the formats the spec uses (date-times at and past
the supported range, 30 February, emails, ids past maxLength).
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apicrud.spec.loader import load_spec
from apicrud.spec.operations import SchemaValidator, compile_operations, schema_properties

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TRICKY = st.sampled_from([
    "", " ", "a" * 41, "a" * 300, "x-abc", "public", "secret", "member", "none",
    "2026-02-30T00:00:00Z", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00", "2026-01-01",
    "9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00Z", "10000-01-01T00:00:00Z",
    "2026-01-01T25:00:00Z", "a@b", "not an email", "user@example.com", "http://x",
    "1", "1.5", "-1", "true", "null", "\u0000", "é" * 65, "[1]", "{}",
])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=70),
                    TRICKY)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6)


def _schemas() -> list[tuple[str, dict]]:
    """Each distinct schema once (parameters such as limit or filter repeat per resource)."""
    spec = load_spec(os.path.join(ROOT, "openapi", "api.yaml"))
    out: dict[str, tuple[str, dict]] = {}
    for op in compile_operations(spec):
        if op.body_schema:
            out.setdefault(json.dumps(op.body_schema, sort_keys=True),
                           (f"{op.operation_id} body", op.body_schema))
        for p in op.params:
            out.setdefault(json.dumps(p.schema, sort_keys=True),
                           (f"{op.operation_id} {p.name}", p.schema))
    return list(out.values())


SCHEMAS = _schemas()


def _instances(schema: dict):
    names = sorted(schema_properties(schema)) or ["x"]
    keys = st.one_of(st.sampled_from(names), st.text(max_size=8))
    return st.one_of(VALUES, st.dictionaries(keys, VALUES, max_size=6),
                     st.lists(st.dictionaries(keys, VALUES, max_size=4), max_size=3))


@pytest.mark.parametrize("name,schema", SCHEMAS, ids=[n for n, _ in SCHEMAS])
def test_the_fast_engine_never_accepts_what_python_refuses(name, schema):
    checked = SchemaValidator(schema)
    if checked.fast is None:  # only a schema with a regular expression has none
        assert "pattern" in repr(schema), f"{name}: no fast path"
        return

    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(_instances(schema))
    def check(instance):
        python_ok = checked.python.is_valid(instance)
        if checked.fast.is_valid(instance):
            assert python_ok, f"{name}: jsonschema-rs passed {instance!r}"
        # what both refuse gives Python's messages (iter_errors falls through to them)
        if not python_ok:
            assert list(checked.iter_errors(instance))

    check()


def test_a_schema_with_a_pattern_is_validated_by_python_alone():
    checked = SchemaValidator({"type": "string", "pattern": "^[a-z]+$"})
    assert checked.fast is None
    assert list(checked.iter_errors("ABC")) and not list(checked.iter_errors("abc"))


def test_formats_are_checked_by_the_functions_python_uses():
    # 30 February: Python's date-time check (apicrud's own) refuses it; so must the fast one
    checked = SchemaValidator({"type": "string", "format": "date-time"})
    assert checked.fast is not None
    assert not checked.fast.is_valid("2026-02-30T00:00:00Z")
    assert not checked.fast.is_valid("9999-12-31T23:59:59-12:00")  # past the range
    assert checked.fast.is_valid("2026-02-28T00:00:00Z")


PLAIN = [(n, s) for n, s in SCHEMAS if SchemaValidator(s).plain is not None]


def test_the_path_ids_have_the_plain_string_check():
    assert any(name.endswith(" id") for name, _ in PLAIN)


@pytest.mark.parametrize("name,schema", PLAIN, ids=[n for n, _ in PLAIN])
def test_the_plain_string_check_answers_as_python_does(name, schema):
    checked = SchemaValidator(schema)

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.one_of(VALUES, st.from_regex(schema.get("pattern") or ".*")))
    def check(instance):
        assert checked.plain(instance) == checked.python.is_valid(instance), \
            f"{name}: {instance!r}"

    check()
    # what it does not accept still gets Python's messages
    assert list(checked.iter_errors("a b")) and list(checked.iter_errors("a" * 100_000))
