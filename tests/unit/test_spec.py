"""Spec bundling across files, and operation compilation (parameters, bodies, security)."""

from __future__ import annotations

import os

import pytest
from werkzeug.datastructures import Headers, MultiDict

from apicrud.errors import ValidationProblem
from apicrud.spec.loader import SpecError, dereference, load_spec
from apicrud.spec.operations import compile_operations, flask_rule

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


SPLIT_ROOT = """
openapi: 3.1.0
info: {title: t, version: "1"}
security: [{bearer: []}]
paths:
  /thing/{id}: {$ref: "thing.path.yaml#/item"}
components:
  securitySchemes: {bearer: {type: http, scheme: bearer}}
  schemas:
    Thing: {$ref: "thing.schema.yaml"}
"""
THING_PATH = """
item:
  get:
    operationId: thing.get
    parameters:
      - {name: id, in: path, required: true, schema: {type: string, maxLength: 5}}
      - {name: n, in: query, schema: {type: integer, minimum: 1}}
      - {name: flag, in: query, schema: {type: boolean}}
      - {name: tag, in: query, schema: {type: array, items: {type: string}}}
    responses: {"200": {description: ok}}
  put:
    operationId: thing.update
    parameters:
      - {name: id, in: path, required: true, schema: {type: string}}
    requestBody:
      required: true
      content:
        application/json:
          schema: {$ref: "api.yaml#/components/schemas/Thing"}
    responses: {"200": {description: ok}}
  delete:
    operationId: thing.delete
    x-public: true
    security: []
    parameters:
      - {name: id, in: path, required: true, schema: {type: string}}
    responses: {"200": {description: ok}}
"""
THING_SCHEMA = """
type: object
additionalProperties: false
required: [name]
properties:
  name: {type: string, minLength: 1}
  size: {type: [integer, "null"], minimum: 0}
"""


@pytest.fixture
def spec(tmp_path):
    root = write(tmp_path, "api.yaml", SPLIT_ROOT)
    write(tmp_path, "thing.path.yaml", THING_PATH)
    write(tmp_path, "thing.schema.yaml", THING_SCHEMA)
    return load_spec(root)


def test_bundle_keeps_root_refs_internal_and_inlines_other_files(spec):
    put = spec["paths"]["/thing/{id}"]["put"]
    assert put["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Thing"}
    assert spec["components"]["schemas"]["Thing"]["required"] == ["name"]
    full = dereference(put, spec)
    assert full["requestBody"]["content"]["application/json"]["schema"]["type"] == "object"


def test_dangling_ref_is_a_spec_error(tmp_path):
    root = write(tmp_path, "api.yaml", SPLIT_ROOT)
    write(tmp_path, "thing.path.yaml", "other: {}\n")
    with pytest.raises(SpecError, match="no such pointer"):
        load_spec(root)


def test_missing_file_and_bad_yaml_are_spec_errors(tmp_path):
    root = write(tmp_path, "api.yaml", SPLIT_ROOT)
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(root)
    write(tmp_path, "thing.path.yaml", "item: [unclosed\n")
    with pytest.raises(SpecError, match="invalid YAML"):
        load_spec(root)


def test_circular_ref_is_a_spec_error(tmp_path):
    root = write(tmp_path, "api.yaml", SPLIT_ROOT)
    write(tmp_path, "thing.path.yaml", "item: {$ref: 'thing.path.yaml#/item'}\n")
    with pytest.raises(SpecError, match="circular"):
        load_spec(root)


def ops(spec):
    return {o.operation_id: o for o in compile_operations(spec)}


def test_parameters_are_coerced_and_validated(spec):
    get = ops(spec)["thing.get"]
    query = MultiDict([("n", "3"), ("flag", "true"), ("tag", "a"), ("tag", "b")])
    values = get.parse_params({"id": "abc"}, query, Headers())
    assert values == {"id": "abc", "n": 3, "flag": True, "tag": ["a", "b"]}


@pytest.mark.parametrize("path,query,field", [
    ({"id": "toolong"}, [], "id"),
    ({"id": "a"}, [("n", "zero")], "n"),
    ({"id": "a"}, [("n", "0")], "n"),
    ({"id": "a"}, [("flag", "maybe")], "flag"),
    ({"id": "a"}, [("n", "1"), ("n", "2")], "n"),
    ({"id": "a"}, [("surprise", "1")], "surprise"),
])
def test_bad_parameters_raise_400_naming_them(spec, path, query, field):
    with pytest.raises(ValidationProblem) as exc:
        ops(spec)["thing.get"].parse_params(path, MultiDict(query), Headers())
    assert field in exc.value.errors


def test_body_validation_full_and_partial(spec):
    put = ops(spec)["thing.update"]
    put.validate_body({"name": "x", "size": None})
    with pytest.raises(ValidationProblem) as exc:
        put.validate_body({"size": -1, "extra": 1})
    assert {"name", "size", "extra"} <= exc.value.errors.keys()
    put.validate_body({"size": 2}, partial=True)  # updates need not repeat required fields


def test_security_inherited_or_public(spec):
    compiled = ops(spec)
    assert compiled["thing.get"].security == [{"bearer": []}]
    assert not compiled["thing.get"].public
    assert compiled["thing.delete"].public and compiled["thing.delete"].security == []


def test_flask_rule_routes_parameter_names_that_are_no_identifiers():
    from flask import Flask

    from apicrud.spec.operations import flask_rule_names

    rule, names = flask_rule_names("/pets/{pet-id}/toys/{toy.id}/{id}")
    app = Flask(__name__)
    app.add_url_rule(rule, "pets", lambda **kw: kw)
    _, args = app.url_map.bind("h").match("/pets/a/toys/b/c")
    assert {names.get(k, k): v for k, v in args.items()} == \
        {"pet-id": "a", "toy.id": "b", "id": "c"}
    assert flask_rule_names("/person/{id}") == ("/person/<id>", {})


def test_flask_rule():
    assert flask_rule("/person/{id}") == "/person/<id>"


def test_project_spec_compiles():
    spec = load_spec(os.path.join(ROOT, "openapi", "api.yaml"))
    compiled = compile_operations(spec)
    assert len(compiled) >= 30
    assert all(o.operation_id for o in compiled)
