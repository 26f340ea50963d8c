"""The served document is checked as a whole at start-up and by `apicrud check`: against
the OpenAPI meta-schema (openapi-spec-validator), and for keys without a value that an
unquoted comma in a YAML flow mapping leaves behind (JSON Schema ignores such keys, so
only this check notices the lost text)."""

from __future__ import annotations

import copy
import os

import pytest
import yaml

from apicrud.spec.loader import load_spec
from apicrud.spec.validate import document_problems

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MINIMAL = {
    "openapi": "3.1.0",
    "info": {"title": "t", "version": "1"},
    "paths": {"/thing": {"get": {"operationId": "thing.find",
                                 "responses": {"200": {"description": "ok"}}}}},
}


@pytest.mark.parametrize("spec_file", [
    "openapi/api.yaml",
    "apicrud/templates/project/openapi/api.yaml",
])
def test_the_shipped_documents_are_sound(spec_file):
    assert document_problems(load_spec(os.path.join(ROOT, spec_file))) == []


def test_a_comma_in_an_unquoted_flow_mapping_is_found():
    spec = copy.deepcopy(MINIMAL)
    spec["paths"]["/thing"]["get"]["responses"]["200"] = yaml.safe_load(
        "{description: found, with the session cookie}")
    problems = document_problems(spec)
    assert problems == [
        "spec /paths/~1thing/get/responses/200/with the session cookie: key 'with the "
        "session cookie' has no value (a comma inside an unquoted flow-mapping value? "
        "quote the text)"]


def test_null_examples_and_defaults_are_not_slips():
    spec = copy.deepcopy(MINIMAL)
    spec["components"] = {"schemas": {"Thing": {
        "type": ["string", "null"], "default": None, "example": None}}}
    assert document_problems(spec) == []


def test_meta_schema_errors_name_the_place():
    spec = copy.deepcopy(MINIMAL)
    del spec["paths"]["/thing"]["get"]["responses"]["200"]["description"]
    problems = document_problems(spec)
    assert len(problems) == 1
    assert problems[0].startswith("spec /paths/~1thing/get/responses/200: ")
    assert "description" in problems[0]
