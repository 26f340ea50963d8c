"""An OpenAPI 3.1 document said in OpenAPI 3.0, for tools that read only 3.0 (connexion 3
refuses 3.1: spec-first/connexion#1396).

:func:`to_openapi_30` returns a converted copy and the list of what 3.0 cannot say (a
JSON pointer and the keyword dropped). The conversion walks the document by its
structure (schemas are found where the OpenAPI objects hold them), so a property named
``const`` or ``if`` is a name, not a keyword. Per schema:

- ``type: [T, "null"]`` -> ``type: T, nullable: true``; several non-null types ->
  ``anyOf`` of one type each; ``type: "null"`` alone -> ``nullable: true, enum: [null]``;
- ``anyOf``/``oneOf`` with a ``{type: "null"}`` branch -> the other branches,
  ``nullable: true``;
- ``const: v`` -> ``enum: [v]``; ``examples: [a, ...]`` -> ``example: a``;
- numeric ``exclusiveMinimum``/``exclusiveMaximum`` -> ``minimum``/``maximum`` with the
  boolean form;
- ``contentMediaType`` -> ``format: binary`` (``contentEncoding: base64`` -> ``format:
  byte``);
- a ``$ref`` with sibling keywords -> ``allOf: [{$ref}]`` beside them (3.0 ignores
  siblings of ``$ref``);
- keywords 3.0 lacks (``$defs``, ``prefixItems``, ``if``/``then``/``else``,
  ``patternProperties``, ``unevaluatedProperties``, ``dependentRequired``, ...) are
  dropped and reported.

At the document level ``webhooks``, ``jsonSchemaDialect``, ``components.pathItems`` and
``info.license.identifier`` are dropped and reported. A document that is 3.0 already
comes back as a copy, with nothing reported.
"""

from __future__ import annotations

import copy
from typing import Any

#: JSON Schema keywords an OpenAPI 3.0 schema object cannot hold
_NOT_IN_30 = ("$schema", "$id", "$anchor", "$defs", "$comment", "$dynamicRef",
              "$dynamicAnchor", "prefixItems", "contains", "minContains", "maxContains",
              "if", "then", "else", "dependentRequired", "dependentSchemas",
              "patternProperties", "propertyNames", "unevaluatedProperties",
              "unevaluatedItems", "contentSchema")

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class _Downgrade:
    def __init__(self) -> None:
        self.lost: list[str] = []

    def drop(self, node: dict[str, Any], key: str, where: str) -> None:
        if key in node:
            node.pop(key)
            self.lost.append(f"{where}/{key}")

    # -- schemas -------------------------------------------------------------------------
    def schema(self, node: Any, where: str) -> Any:
        if not isinstance(node, dict):
            return node
        out = dict(node)
        if "$ref" in out and len(out) > 1:
            ref = out.pop("$ref")
            out["allOf"] = [{"$ref": ref}] + list(out.get("allOf") or [])
        for key in _NOT_IN_30:
            self.drop(out, key, where)
        types = out.get("type")
        if isinstance(types, list):
            real = [t for t in types if t != "null"]
            if len(real) < len(types):
                out["nullable"] = True
            if len(real) == 1:
                out["type"] = real[0]
            elif not real:
                out.pop("type")
                out["enum"] = [None]
            else:
                out.pop("type")
                out["anyOf"] = [{"type": t} for t in real] + list(out.get("anyOf") or [])
        elif types == "null":
            out.pop("type")
            out.update(nullable=True, enum=[None])
        if "const" in out:
            out["enum"] = [out.pop("const")]
        if isinstance(out.get("examples"), list):
            examples = out.pop("examples")
            if examples:
                out.setdefault("example", examples[0])
        for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            value = out.get(bound)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[plain] = value
                out[bound] = True
        if "contentMediaType" in out or "contentEncoding" in out:
            encoding = out.pop("contentEncoding", None)
            out.pop("contentMediaType", None)
            out.setdefault("type", "string")
            out["format"] = "byte" if encoding == "base64" else "binary"
        for key in ("anyOf", "oneOf"):
            branches = out.get(key)
            if isinstance(branches, list):
                kept = [b for b in branches if not (isinstance(b, dict) and
                                                    b.get("type") == "null" and len(b) == 1)]
                if len(kept) < len(branches):
                    out["nullable"] = True
                    out[key] = kept
        for key in ("allOf", "anyOf", "oneOf"):
            if isinstance(out.get(key), list):
                out[key] = [self.schema(s, f"{where}/{key}/{i}")
                            for i, s in enumerate(out[key])]
        for key in ("items", "not"):
            if isinstance(out.get(key), dict):
                out[key] = self.schema(out[key], f"{where}/{key}")
        if isinstance(out.get("additionalProperties"), dict):
            out["additionalProperties"] = self.schema(out["additionalProperties"],
                                                      f"{where}/additionalProperties")
        if isinstance(out.get("properties"), dict):
            out["properties"] = {name: self.schema(s, f"{where}/properties/{_esc(name)}")
                                 for name, s in out["properties"].items()}
        return out

    # -- the objects that hold schemas -------------------------------------------------
    def content(self, content: Any, where: str) -> Any:
        if not isinstance(content, dict):
            return content
        out = {}
        for media, obj in content.items():
            here = f"{where}/{_esc(media)}"
            if isinstance(obj, dict) and "schema" in obj:
                obj = {**obj, "schema": self.schema(obj["schema"], here + "/schema")}
            if isinstance(obj, dict) and isinstance(obj.get("encoding"), dict):
                obj = {**obj, "encoding": {k: self.with_headers(v, f"{here}/encoding/{k}")
                                           for k, v in obj["encoding"].items()}}
            out[media] = obj
        return out

    def with_schema(self, obj: Any, where: str) -> Any:
        """A parameter or header: a schema, or a content map."""
        if not isinstance(obj, dict):
            return obj
        obj = dict(obj)
        if "schema" in obj:
            obj["schema"] = self.schema(obj["schema"], where + "/schema")
        if "content" in obj:
            obj["content"] = self.content(obj["content"], where + "/content")
        return obj

    def with_headers(self, obj: Any, where: str) -> Any:
        if isinstance(obj, dict) and isinstance(obj.get("headers"), dict):
            obj = {**obj, "headers": {k: self.with_schema(v, f"{where}/headers/{k}")
                                      for k, v in obj["headers"].items()}}
        return obj

    def response(self, obj: Any, where: str) -> Any:
        obj = self.with_headers(obj, where)
        if isinstance(obj, dict) and "content" in obj:
            obj = {**obj, "content": self.content(obj["content"], where + "/content")}
        return obj

    def body(self, obj: Any, where: str) -> Any:
        if isinstance(obj, dict) and "content" in obj:
            obj = {**obj, "content": self.content(obj["content"], where + "/content")}
        return obj

    def operation(self, op: Any, where: str) -> Any:
        if not isinstance(op, dict):
            return op
        op = dict(op)
        if isinstance(op.get("parameters"), list):
            op["parameters"] = [self.with_schema(p, f"{where}/parameters/{i}")
                                for i, p in enumerate(op["parameters"])]
        if "requestBody" in op:
            op["requestBody"] = self.body(op["requestBody"], where + "/requestBody")
        if isinstance(op.get("responses"), dict):
            op["responses"] = {code: self.response(r, f"{where}/responses/{code}")
                               for code, r in op["responses"].items()}
        self.drop(op, "callbacks", where)
        return op

    def path_item(self, item: Any, where: str) -> Any:
        if not isinstance(item, dict):
            return item
        item = dict(item)
        if isinstance(item.get("parameters"), list):
            item["parameters"] = [self.with_schema(p, f"{where}/parameters/{i}")
                                  for i, p in enumerate(item["parameters"])]
        for method in _METHODS:
            if method in item:
                item[method] = self.operation(item[method], f"{where}/{method}")
        return item

    def document(self, doc: dict[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(doc)
        doc["openapi"] = "3.0.3"
        for key in ("webhooks", "jsonSchemaDialect"):
            self.drop(doc, key, "#")
        license_ = (doc.get("info") or {}).get("license")
        if isinstance(license_, dict):
            self.drop(license_, "identifier", "#/info/license")
        doc["paths"] = {path: self.path_item(item, f"#/paths/{_esc(path)}")
                        for path, item in (doc.get("paths") or {}).items()}
        comps = doc.get("components")
        if isinstance(comps, dict):
            self.drop(comps, "pathItems", "#/components")
            convert = {"schemas": self.schema, "parameters": self.with_schema,
                       "headers": self.with_schema, "requestBodies": self.body,
                       "responses": self.response}
            for section, fn in convert.items():
                if isinstance(comps.get(section), dict):
                    comps[section] = {name: fn(obj, f"#/components/{section}/{_esc(name)}")
                                      for name, obj in comps[section].items()}
        return doc


def _esc(name: str) -> str:
    return str(name).replace("~", "~0").replace("/", "~1")


def to_openapi_30(doc: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the document said in OpenAPI 3.0.3, the pointers of what 3.0 could not say).

    A document that is 3.0 already comes back as a copy, with nothing lost.
    """
    if str(doc.get("openapi", "")).startswith("3.0"):
        return copy.deepcopy(doc), []
    conv = _Downgrade()
    return conv.document(doc), conv.lost
