"""ResourceSpec: everything known about one resource, merged once at start-up.

A resource is declared in the spec's root under ``x-apicrud-resources``::

    x-apicrud-resources:
      person: {model: Person, schema: Person}
      message: {count: estimated, if_match: required}
      auth: {controller: "apicrud.auth.controller:AuthController"}

``model`` defaults to the CamelCase resource name looked up in the models module,
``schema`` to the same name under ``components/schemas``, ``controller`` to BasicCRUD.
``count`` is find's default count mode (exact, estimated or none; a request's ``count``
parameter or ``Prefer: count=...`` header chooses another), ``if_match: required`` makes
updates and deletes without ``If-Match`` a 428.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import inspect as sa_inspect

from apicrud.db.query import parse_sort
from apicrud.errors import BadRequest
from apicrud.spec.loader import SpecError, dereference
from apicrud.spec.operations import is_file_schema, schema_types

COMPUTED = frozenset({"rbac"})


@dataclass(frozen=True)
class Embed:
    """A schema property filled on request with related records (``x-embed``).

    To one: ``via`` is a field of this resource holding the other record's id. To many
    (``many: true``): ``via`` is the other resource's field holding this record's id, and
    the ``limit`` first records in ``sort`` order are embedded."""

    resource: str
    via: str
    many: bool = False
    limit: int = 5
    sort: str | None = None


@dataclass
class ResourceSpec:
    name: str
    model: Any | None
    controller_path: str | None
    schema: dict[str, Any] = field(default_factory=dict)
    exposed: tuple[str, ...] = ()  # schema properties backed by model attributes
    computed: frozenset[str] = frozenset()
    read_only: frozenset[str] = frozenset()
    fields: dict[str, Any] = field(default_factory=dict)  # name -> Column (filter/sort)
    columns: tuple[str, ...] = ()  # every column attribute of the model
    owner: str | None = None
    privacy: str | None = None
    references: dict[str, str] = field(default_factory=dict)  # fk attr -> table name
    search: tuple[str, ...] = ()  # text fields searched by filter "q"
    # computed property -> (attribute holding the related id, related resource, its field)
    related: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    # property -> records embedded on request (``embed=``), declared with x-embed
    embeds: dict[str, Embed] = field(default_factory=dict)
    # property -> its schema: file fields (``format: binary`` / ``contentMediaType``),
    # uploaded as multipart parts and served by apicrud.files, never JSON values
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    # column -> (the resource of files it names, the content types it accepts or None):
    # a field of the model holding a file's id, declared with ``contentMediaType`` (or
    # ``x-content-types``) and, without a foreign key, ``x-file-resource``
    file_refs: dict[str, tuple[str | None, tuple[str, ...] | None]] = \
        field(default_factory=dict)
    count_mode: str = "exact"  # find's default count: exact | estimated | none
    #: seconds an exact count may be kept in Redis (apicrud.db.countcache); 0: never
    count_cache: int = 0
    if_match_required: bool = False  # updates and deletes need If-Match (else 428)
    problems: list[str] = field(default_factory=list)

    @property
    def table(self) -> str | None:
        return self.model.__tablename__ if self.model is not None else None


def camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def import_object(path: str) -> Any:
    module, _, attr = path.partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, attr) if attr else obj


def build_resources(spec: dict[str, Any], models_module: str) -> dict[str, ResourceSpec]:
    """Build a ResourceSpec for every entry of ``x-apicrud-resources``; faults go to .problems."""
    declared = spec.get("x-apicrud-resources") or {}
    models = importlib.import_module(models_module)
    schemas = (spec.get("components") or {}).get("schemas") or {}
    out: dict[str, ResourceSpec] = {}
    for name, decl in declared.items():
        decl = decl or {}
        res = ResourceSpec(name=name, model=None, controller_path=decl.get("controller"))
        res.count_mode = decl.get("count", "exact")
        if res.count_mode not in ("exact", "estimated", "none"):
            res.problems.append(f"resource {name}: count {res.count_mode!r} must be exact, "
                                "estimated or none")
        kept = decl.get("count_cache", 0)
        if isinstance(kept, bool) or not isinstance(kept, int) or not 0 <= kept <= 86400:
            res.problems.append(f"resource {name}: count_cache {kept!r} must be a number "
                                "of seconds from 0 (no cache) to 86400")
        else:
            res.count_cache = kept
        if_match = decl.get("if_match", "optional")
        if if_match not in ("optional", "required"):
            res.problems.append(f"resource {name}: if_match {if_match!r} must be optional "
                                "or required")
        res.if_match_required = if_match == "required"
        # resources with only a controller (auth, health) have no model unless named
        has_model = "model" in decl or "controller" not in decl or \
            hasattr(models, camel(name))
        model_name = decl.get("model", camel(name) if has_model else None)
        if model_name:
            res.model = getattr(models, model_name, None)
            if res.model is None:
                res.problems.append(f"resource {name}: model {model_name!r} not found in "
                                    f"{models_module}")
        schema_name = decl.get("schema", camel(name) if res.model is not None else None)
        if schema_name:
            if schema_name not in schemas:
                res.problems.append(f"resource {name}: schema {schema_name!r} not in "
                                    "components/schemas")
            else:
                try:
                    res.schema = dereference(schemas[schema_name], spec)
                except SpecError as exc:
                    res.problems.append(f"resource {name}: schema {schema_name!r}: {exc}")
        if res.model is not None and res.schema:
            bind_model(res)
        out[name] = res
    return out


def content_types(pschema: dict[str, Any]) -> tuple[str, ...] | None:
    """A file field's allow list: ``x-content-types``, else ``contentMediaType`` (a
    comma-separated list); None for any type (``*/*``)."""
    types = pschema.get("x-content-types")
    if types is None and pschema.get("contentMediaType") not in (None, "*/*"):
        types = [t.strip() for t in str(pschema["contentMediaType"]).split(",")]
    return tuple(str(t).lower() for t in types) if types else None


def _file_ref(res: ResourceSpec, prop: str,
              pschema: dict[str, Any]) -> tuple[str | None, tuple[str, ...] | None]:
    types = pschema.get("x-content-types")
    if types is not None and not (isinstance(types, list) and types and
                                  all(isinstance(t, str) and "/" in t for t in types)):
        res.problems.append(f"resource {res.name}: {prop}: x-content-types must be a list "
                            "of media types (image/png, image/*)")
    target = pschema.get("x-file-resource")
    if target is not None and not isinstance(target, str):
        res.problems.append(f"resource {res.name}: {prop}: x-file-resource must be a "
                            "resource name")
        target = None
    return target, content_types(pschema)


def bind_model(res: ResourceSpec) -> None:
    model: Any = res.model  # bound only for a resource with a model
    mapper = sa_inspect(model)
    columns = {c.key: c for c in mapper.column_attrs}
    res.columns = tuple(columns)
    props = res.schema.get("properties") or {}
    exposed, computed, read_only = [], set(), set()
    for prop, pschema in props.items():
        if prop in columns:
            exposed.append(prop)
            if "contentMediaType" in pschema or "x-content-types" in pschema:
                res.file_refs[prop] = _file_ref(res, prop, pschema)
        elif prop in COMPUTED or pschema.get("x-computed"):
            computed.add(prop)
        elif isinstance(pschema.get("x-embed"), dict):
            emb = pschema["x-embed"]
            many = bool(emb.get("many"))
            limit = emb.get("limit", 5)
            if not emb.get("resource") or not emb.get("via") or \
                    (not many and emb.get("via") not in columns) or \
                    not isinstance(limit, int) or not 1 <= limit <= 100:
                res.problems.append(f"resource {res.name}: {prop}: x-embed needs resource and "
                                    "via (a field of the model; of the other resource with "
                                    "many: true), and a limit of 1 to 100")
            else:
                res.embeds[prop] = Embed(emb["resource"], emb["via"], many, limit,
                                         emb.get("sort"))
                computed.add(prop)
        elif isinstance(pschema.get("x-related"), dict):
            rel = pschema["x-related"]
            if rel.get("via") not in columns or not rel.get("resource") or \
                    not rel.get("field"):
                res.problems.append(f"resource {res.name}: {prop}: x-related needs via (a "
                                    "field of the model), resource and field")
            else:
                res.related[prop] = (rel["via"], rel["resource"], rel["field"])
                computed.add(prop)
        elif is_file_schema(pschema):
            res.files[prop] = pschema
            computed.add(prop)
        else:
            res.problems.append(f"resource {res.name}: schema property {prop!r} is not a field "
                                f"of model {model.__name__}")
        if pschema.get("readOnly") or prop in COMPUTED or prop in res.related or \
                prop in res.embeds or prop in res.files:
            read_only.add(prop)
    if "id" not in exposed:
        res.problems.append(f"resource {res.name}: schema must expose 'id'")
    res.exposed = tuple(exposed)
    res.computed = frozenset(computed)
    res.read_only = frozenset(read_only | {"id", "created", "modified"} & set(exposed))
    res.fields = {name: getattr(res.model, name) for name in exposed}
    res.owner = getattr(res.model, "__owner__", None)
    if res.owner and res.owner not in columns:
        res.owner = None
    res.privacy = "privacy" if "privacy" in columns else None
    for prop in exposed:
        for fk in columns[prop].columns[0].foreign_keys:
            res.references[prop] = fk.column.table.name
    for prop, (target, _accepts) in res.file_refs.items():
        if target is None and prop not in res.references:
            res.problems.append(f"resource {res.name}: {prop}: a file field holding an id "
                                "needs a foreign key to the files' table or "
                                "x-file-resource")
    declared = res.schema.get("x-search")
    if declared is not None:
        bad = [f for f in declared if f not in exposed]
        if bad:
            res.problems.append(f"resource {res.name}: x-search names unknown fields {bad}")
        res.search = tuple(f for f in declared if f in exposed)
    else:  # free text: exposed strings that are not ids, enums or formatted values
        res.search = tuple(
            f for f in exposed
            if "string" in schema_types(props[f], untyped=[]) and not props[f].get("enum")
            and not props[f].get("format") and not props[f].get("readOnly")
            and f != "uid" and not f.endswith("_id") and f not in res.references
            and not props[f].get("$ref"))


def check_related(resources: dict[str, ResourceSpec]) -> list[str]:
    """x-related must name a resource with a model and a field its schema exposes; x-embed
    a model-backed resource (and, to many, a field it exposes and a sort it can do)."""
    problems = []
    for res in resources.values():
        for prop, emb in res.embeds.items():
            other = resources.get(emb.resource)
            if other is None or other.model is None:
                problems.append(f"resource {res.name}: {prop}: x-embed resource "
                                f"{emb.resource!r} is not a model-backed resource")
            elif emb.many and emb.via not in other.exposed:
                problems.append(f"resource {res.name}: {prop}: {emb.resource}.{emb.via} is not "
                                f"exposed by {emb.resource}'s schema")
            elif emb.sort:
                try:
                    parse_sort(emb.sort, other.fields)
                except BadRequest as exc:
                    problems.append(f"resource {res.name}: {prop}: x-embed sort "
                                    f"{emb.sort!r}: {exc}")
    for res in resources.values():
        for prop, (_, target, fieldname) in res.related.items():
            other = resources.get(target)
            if other is None or other.model is None:
                problems.append(f"resource {res.name}: {prop}: x-related resource {target!r} "
                                "is not a model-backed resource")
            elif fieldname not in other.exposed:
                problems.append(f"resource {res.name}: {prop}: {target}.{fieldname} is not "
                                f"exposed by {target}'s schema")
    return problems

