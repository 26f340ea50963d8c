"""apicrud.spec.downgrade: OpenAPI 3.1 said in 3.0 (what connexion 3 reads)."""

from __future__ import annotations

from apicrud.spec.downgrade import to_openapi_30


def _doc(schema, **more):
    return {"openapi": "3.1.0", "info": {"title": "t", "version": "1"},
            "paths": {"/x": {"get": {"parameters": [{"name": "q", "in": "query",
                                                      "schema": {"type": ["integer", "null"]}}],
                                     "responses": {"200": {"description": "ok", "content": {
                                         "application/json": {"schema": schema}}}}}}},
            "components": {"schemas": {"S": schema}}, **more}


def test_type_arrays_const_examples_and_bounds():
    schema = {"type": "object", "properties": {
        "a": {"type": ["string", "null"], "maxLength": 3},
        "b": {"type": ["integer", "string"]},
        "const": {"const": "x"},  # a property named const: a name, not a keyword
        "c": {"type": "number", "exclusiveMinimum": 0, "examples": [1.5, 2]},
        "d": {"anyOf": [{"$ref": "#/components/schemas/S"}, {"type": "null"}]},
        "e": {"$ref": "#/components/schemas/S", "description": "a sibling"},
        "f": {"type": "string", "contentMediaType": "image/png"},
    }}
    doc, lost = to_openapi_30(_doc(schema))
    assert doc["openapi"] == "3.0.3" and lost == []
    props = doc["components"]["schemas"]["S"]["properties"]
    assert props["a"] == {"type": "string", "nullable": True, "maxLength": 3}
    assert props["b"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert props["const"] == {"enum": ["x"]}
    assert props["c"] == {"type": "number", "minimum": 0, "exclusiveMinimum": True,
                          "example": 1.5}
    assert props["d"] == {"anyOf": [{"$ref": "#/components/schemas/S"}], "nullable": True}
    assert props["e"] == {"allOf": [{"$ref": "#/components/schemas/S"}],
                          "description": "a sibling"}
    assert props["f"] == {"type": "string", "format": "binary"}
    param = doc["paths"]["/x"]["get"]["parameters"][0]["schema"]
    assert param == {"type": "integer", "nullable": True}


def test_what_30_cannot_say_is_dropped_and_reported():
    schema = {"type": "object", "patternProperties": {"^x": {}},
              "properties": {"if": {"type": "string", "if": {"minLength": 1}}}}
    doc, lost = to_openapi_30(_doc(schema, webhooks={"w": {}}))
    assert "webhooks" not in doc
    s = doc["components"]["schemas"]["S"]
    assert "patternProperties" not in s and s["properties"]["if"] == {"type": "string"}
    assert "#/webhooks" in lost
    assert "#/components/schemas/S/patternProperties" in lost
    assert "#/components/schemas/S/properties/if/if" in lost


def test_a_30_document_is_copied_unchanged():
    doc = {"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {}}
    out, lost = to_openapi_30(doc)
    assert out == doc and out is not doc and lost == []


def test_the_default_application_loads_in_connexion():
    import os

    from connexion.spec import Specification

    from apicrud.config import load_settings
    from apicrud.services import load_declarations

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    decl = load_declarations(load_settings(root=root))
    doc, lost = to_openapi_30(decl.spec)
    assert lost == []
    spec = Specification.from_dict(doc)  # raises on a document 3.0's schema refuses
    assert "/list/{id}" in spec.raw["paths"]
