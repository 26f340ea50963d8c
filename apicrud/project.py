"""Generators for a project of the user's own: ``apicrud init`` and ``apicrud add resource``.

:func:`init_project` copies the template in ``apicrud/templates/project`` (spec,
models module, rbac.yaml, service_config.yaml, migrations, a test, a README) into a
folder, adds the example resource ``note`` the way :func:`add_resource` adds any other,
and writes the initial migration from the models.

:func:`add_resource` writes one resource's path and schema YAML, registers them in the
root spec (``x-apicrud-resources``, ``paths``, ``components.schemas``), appends its
model to the models module, its policy to rbac.yaml and a migration creating its table.
The root files are edited as text, so the user's comments and layout stay; every
change is worked out (and the migration rendered from the new model) before a file is
written. Problems in what the user asked for raise :class:`ProjectError`.
"""

from __future__ import annotations

import json
import keyword
import os
import re
import subprocess  # nosec B404 # runs this Python on a fixed script, no shell
import sys
import textwrap
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from apicrud.crud.registry import camel
from apicrud.errors import ApicrudError
from apicrud.metrics.grants import plural as default_plural

if TYPE_CHECKING:
    from apicrud.config import Settings

TEMPLATE = Path(__file__).with_name("templates") / "project"
#: entries of a folder ``init`` writes into without --force
IGNORED_ENTRIES = frozenset({".git", ".venv", "venv"})

NAME_RE = re.compile(r"[a-z](?:[a-z0-9]|_(?!_))*")
NAME_MAX = 24  # constraint names (uq_<table>_<column>_live) must fit MariaDB's 64
FIELD_MAX = 30
#: resource names the framework or the template already use
RESERVED_RESOURCES = frozenset({
    "auth", "health", "config", "metrics", "metric", "trashcan", "ui", "openapi", "admin",
    "person", "account", "apikey", "scope", "settings", "grant", "totp", "registration",
    "base", "record", "groups"})
#: columns every record has (RecordMixin), the owner and the computed rbac field
RESERVED_FIELDS = frozenset({
    "id", "created", "modified", "status", "version", "live", "uid", "rbac", "metadata",
    "registry"})


class ProjectError(ApicrudError):
    """What the user asked for cannot be done (bad name, field, folder, project)."""

    exit_code = 2  # a bad request, as a usage error is (apicrud.cli)


# -- fields -----------------------------------------------------------------------

@dataclass(frozen=True)
class FieldType:
    column: str  # SQLAlchemy type in the model
    python: str  # the Mapped[...] annotation
    schema: dict  # JSON Schema of the value (null is added when not required)


FIELD_TYPES = {
    "string": FieldType("String(255)", "str", {"type": "string", "maxLength": 255}),
    "text": FieldType("Text", "str", {"type": "string"}),
    "integer": FieldType("Integer", "int", {"type": "integer"}),
    "number": FieldType("Float", "float", {"type": "number"}),
    "boolean": FieldType("Boolean", "bool", {"type": "boolean"}),
    "date-time": FieldType("Timestamp", "datetime", {"type": "string", "format": "date-time"}),
}
FLAGS = ("required", "unique")


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    required: bool = False
    unique: bool = False

    @property
    def kind(self) -> FieldType:
        return FIELD_TYPES[self.type]


def check_name(name: str) -> None:
    if not NAME_RE.fullmatch(name or "") or len(name) > NAME_MAX:
        raise ProjectError(
            f"resource name {name!r}: use 1 to {NAME_MAX} lower-case letters, digits and "
            "single underscores, starting with a letter (e.g. book, book_review)")
    if name.endswith("_"):
        raise ProjectError(f"resource name {name!r} must not end with an underscore")
    if name in RESERVED_RESOURCES or keyword.iskeyword(name):
        raise ProjectError(f"resource name {name!r} is reserved; choose another")


def parse_field(text: str) -> Field:
    """``title:string:required`` -> Field."""
    parts = text.split(":")
    name = parts[0]
    if len(parts) < 2 or not parts[1]:
        raise ProjectError(f"field {text!r}: expected NAME:TYPE[:required][:unique], "
                           f"TYPE one of {', '.join(FIELD_TYPES)}")
    if not NAME_RE.fullmatch(name) or len(name) > FIELD_MAX or name.endswith("_"):
        raise ProjectError(f"field {text!r}: the name must be 1 to {FIELD_MAX} lower-case "
                           "letters, digits and single underscores, starting with a letter")
    if name in RESERVED_FIELDS or keyword.iskeyword(name):
        raise ProjectError(f"field {text!r}: {name!r} is reserved (every record has id, "
                           "uid, created, modified, status, version, live and rbac)")
    ftype = parts[1]
    if ftype not in FIELD_TYPES:
        raise ProjectError(f"field {text!r}: unknown type {ftype!r} (one of "
                           f"{', '.join(FIELD_TYPES)})")
    flags = parts[2:]
    for flag in flags:
        if flag not in FLAGS:
            raise ProjectError(f"field {text!r}: unknown flag {flag!r} (required, unique)")
    if len(set(flags)) != len(flags):
        raise ProjectError(f"field {text!r}: a flag is given twice")
    return Field(name, ftype, "required" in flags, "unique" in flags)


def parse_fields(texts: list[str] | tuple[str, ...]) -> list[Field]:
    if not texts:
        raise ProjectError("give at least one --field NAME:TYPE (e.g. --field "
                           "title:string:required)")
    fields = [parse_field(t) for t in texts]
    names = [f.name for f in fields]
    for n in names:
        if names.count(n) > 1:
            raise ProjectError(f"field {n!r} is given twice")
    return fields


# -- what a resource is made of ---------------------------------------------------

def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _words(name: str) -> str:
    return name.replace("_", " ")


def path_yaml(name: str, plural: str, model: str, required: list[str] | None = None) -> str:
    """The operations of a resource. ``required``: the fields a create must give (the
    resource schema itself requires nothing, as reads with ``fields=`` and partial
    updates use it too)."""
    one, many = _words(name), _words(plural)
    a = _article(one)
    ref = "api.yaml#/components"
    create = f'{{$ref: "{ref}/schemas/{model}"}}'
    if required:
        create = f"{{allOf: [{create}, {{required: [{', '.join(required)}]}}]}}"
    parts = [f'''\
        # {many}: the operations of the resource {name} (BasicCRUD unless
        # x-apicrud-resources names a controller). Shared parameters and responses are
        # components of api.yaml.
        collection:
          get:
            operationId: {name}.find
            summary: list {many}
            tags: [{name}]
            parameters:
              - $ref: "{ref}/parameters/filter"
              - $ref: "{ref}/parameters/sort"
              - $ref: "{ref}/parameters/limit"
              - $ref: "{ref}/parameters/offset"
              - $ref: "{ref}/parameters/cursor_next"
            responses:
              "200":
                description: one page of {many}
                headers:
                  X-Total-Count: {{$ref: "{ref}/headers/X-Total-Count"}}
                content:
                  application/json:
                    schema:
                      type: object
                      required: [items]
                      properties:
                        items: {{type: array, items: {{$ref: "{ref}/schemas/{model}"}}}}
                        count: {{type: integer}}
                        cursor_next: {{type: string}}
              default: {{$ref: "{ref}/responses/Problem"}}
          post:
            operationId: {name}.create
            summary: add {a} {one}
            tags: [{name}]
            requestBody:
              required: true
              content:
                application/json:
                  schema: {create}
            responses:
              "201":
                description: created
                content:
                  application/json:
                    schema: {{$ref: "{ref}/schemas/{model}"}}
              default: {{$ref: "{ref}/responses/Problem"}}
        item:
          get:
            operationId: {name}.get
            summary: one {one}
            tags: [{name}]
            parameters:
              - $ref: "{ref}/parameters/id"
            responses:
              "200":
                description: the {one}
                headers:
                  ETag: {{$ref: "{ref}/headers/ETag"}}
                content:
                  application/json:
                    schema: {{$ref: "{ref}/schemas/{model}"}}
              default: {{$ref: "{ref}/responses/Problem"}}
        ''']
    for method in ("put", "patch"):
        op = "update" if method == "put" else "patch"
        parts.append(f'''\
          {method}:
            operationId: {name}.{op}
            summary: update {a} {one} (fields given)
            tags: [{name}]
            parameters:
              - $ref: "{ref}/parameters/id"
              - $ref: "{ref}/parameters/if_match"
            requestBody:
              required: true
              content:
                application/json:
                  schema: {{$ref: "{ref}/schemas/{model}"}}
            responses:
              "200":
                description: the updated {one}
                content:
                  application/json:
                    schema: {{$ref: "{ref}/schemas/{model}"}}
              default: {{$ref: "{ref}/responses/Problem"}}
        ''')
    parts.append(f'''\
          delete:
            operationId: {name}.delete
            summary: move {many} to the trashcan
            tags: [{name}]
            parameters:
              - $ref: "{ref}/parameters/ids"
              - $ref: "{ref}/parameters/if_match"
            responses:
              "200": {{$ref: "{ref}/responses/Deleted"}}
              default: {{$ref: "{ref}/responses/Problem"}}
        ''')
    # each part is written 8 spaces deep in this function
    return "".join(line[8:] if line.startswith(" " * 8) else line.lstrip(" ")
                   for part in parts for line in part.splitlines(keepends=True))


def _flow(value: Any) -> str:
    """A small JSON Schema as one YAML flow mapping."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1000)
    return text.strip().replace("'null'", '"null"')


def schema_yaml(name: str, fields: list[Field], plural: str | None = None) -> str:
    title = _words(plural or default_plural(name)).capitalize()  # the admin UI's label
    lines = [f"# the fields of {_article(name)} {_words(name)}: what clients send and read",
             f"title: {title}", "type: object", "additionalProperties: false"]
    lines += ["properties:", "  id: {type: string, readOnly: true}"]
    for f in fields:
        schema = dict(f.kind.schema)
        if f.required:
            if schema["type"] == "string" and "format" not in schema:
                schema = {"type": "string", "minLength": 1, **{k: v for k, v in
                                                               schema.items() if k != "type"}}
        else:
            schema["type"] = [schema["type"], "null"]
        lines.append(f"  {f.name}: {_flow(schema)}")
    lines += [
        "  uid: {type: string, maxLength: 40, description: owner (person id); defaults to "
        "the caller}",
        "  status: {type: string, enum: [active], readOnly: true}",
        "  created: {type: string, format: date-time, readOnly: true}",
        '  modified: {type: [string, "null"], format: date-time, readOnly: true}',
        "  rbac: {type: string, readOnly: true, description: actions the caller holds on "
        "this record}"]
    return "\n".join(lines) + "\n"


def model_code(name: str, model: str, fields: list[Field]) -> str:
    lines = ["", "", f"class {model}(RecordMixin, Base):", f'    __tablename__ = "{name}"']
    unique = [f for f in fields if f.unique]
    if unique:
        # "live" is NULL once trashed: a value is unique among live records only
        args = ", ".join(f'UniqueConstraint("{f.name}", "live")' for f in unique)
        lines.append(f"    __table_args__ = ({args},)")
    lines.append("")
    for f in fields:
        kind = f.kind
        if f.required:
            lines.append(f"    {f.name}: Mapped[{kind.python}] = mapped_column("
                         f"{kind.column}, nullable=False)")
        else:
            lines.append(f"    {f.name}: Mapped[{kind.python} | None] = mapped_column("
                         f"{kind.column})")
    lines += ["    uid: Mapped[str] = mapped_column(",
              '        ForeignKey("person.id", ondelete="CASCADE"), nullable=False, '
              "index=True)"]
    return "\n".join(lines) + "\n"


def policy_entry(name: str) -> str:
    return (f"  {name}:\n"
            f'    - {{principal: admin, resource: "{name}:*", actions: crud}}\n'
            f'    - {{principal: "user/{{{{uid}}}}", resource: "{name}:{{{{uid}}}}", '
            f"actions: crud}}\n")


# -- editing YAML as text ---------------------------------------------------------

def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _find_key(lines: list[str], key: str, start: int, end: int, indent: int) -> int | None:
    pattern = re.compile(rf"^{' ' * indent}{re.escape(key)}:\s*(#.*)?$")
    for i in range(start, end):
        if pattern.match(lines[i].rstrip("\n")):
            return i
        if re.match(rf"^{' ' * indent}{re.escape(key)}:\s*\S", lines[i]):
            raise ProjectError(f"{key}: written inline; make it a block mapping (one "
                               "entry per line) so entries can be added")
    return None


def _block_end(lines: list[str], at: int) -> int:
    """Index after the last content line of the block that starts at line ``at``
    (comments and blank lines after it stay where they are)."""
    indent, last = _indent(lines[at]), at
    for i in range(at + 1, len(lines)):
        if not _content(lines[i]):
            continue
        if _indent(lines[i]) <= indent:
            break
        last = i
    return last + 1


def insert_entries(text: str, keys: tuple[str, ...], entries: str, where: str) -> str:
    """Add ``entries`` (YAML lines indented for a child of ``keys[-1]``, two spaces per
    level) at the end of the block mapping at ``keys`` (e.g. ("components",
    "schemas")); a missing top-level key is appended."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    start, end = 0, len(lines)
    at = None
    for depth, key in enumerate(keys):
        at = _find_key(lines, key, start, end, depth * 2)
        if at is None:
            if depth == 0:
                return "".join(lines) + f"\n{key}:\n" + entries
            raise ProjectError(f"{where}: no {'.'.join(keys)} to add to")
        start, end = at + 1, _block_end(lines, at)
    # children indented as the existing ones are (else two spaces deeper)
    want = len(keys) * 2
    have = next((_indent(lines[i]) for i in range(start, end) if _content(lines[i])), want)
    if have != want:
        entries = "".join(" " * (have - want) + line if line.strip() else line
                          for line in entries.splitlines(keepends=True))
    return "".join(lines[:end] + [entries] + lines[end:])


# -- the project ------------------------------------------------------------------

@dataclass
class Project:
    root: Path
    spec_file: Path
    rbac_file: Path
    models_module: str
    models_file: Path
    versions: Path

    @classmethod
    def at(cls, root: Path | str, settings: Settings | None = None) -> Project:
        from apicrud.config import ConfigError, load_settings

        root = Path(root).resolve()
        if settings is None:
            try:
                settings = load_settings(root=root)
            except ConfigError as exc:
                raise ProjectError(str(exc)) from None
        spec_file = settings.path("openapi_dir") / settings.openapi_file
        if not spec_file.is_file():
            raise ProjectError(f"{root} is not an apicrud project (no "
                               f"{os.path.relpath(spec_file, root)}): run `apicrud init "
                               "DIR` to create one")
        module = settings.models_module
        base = root.joinpath(*module.split("."))
        models_file = next((p for p in (base.with_suffix(".py"), base / "__init__.py")
                            if p.is_file()), None)
        if models_file is None:
            raise ProjectError(f"models module {module!r} (setting models_module) is not a "
                               f"file in {root}; add the model by hand")
        return cls(root, spec_file, settings.path("rbac_file"), module, models_file,
                   root / "migrations" / "versions")

    def rel(self, path: Path) -> str:
        return os.path.relpath(path, self.root)


REQUIRED_COMPONENTS = {
    "parameters": ("id", "ids", "filter", "sort", "limit", "offset", "cursor_next",
                   "if_match"),
    "headers": ("ETag", "X-Total-Count"),
    "responses": ("Problem", "Deleted"),
}


def _load_yaml(path: Path, text: str) -> Any:
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ProjectError(f"{path}: not valid YAML ({exc})") from None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProjectError(f"cannot read {path}: {exc.strerror}") from None


_RENDER = r"""
import importlib, json, sys
root, module, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
sys.path.insert(0, root)
from alembic.autogenerate import render_python_code
from alembic.operations import ops
metadata = importlib.import_module(module).Base.metadata
tables = [t for t in metadata.sorted_tables if not wanted or t.name in wanted]
up = []
for t in tables:
    up.append(ops.CreateTableOp.from_table(t))
    up += [ops.CreateIndexOp.from_index(i) for i in sorted(t.indexes, key=lambda i: i.name)]
up = ops.UpgradeOps(ops=up)
print(json.dumps({"tables": [t.name for t in tables], "upgrade": render_python_code(up),
                  "downgrade": render_python_code(up.reverse())}))
"""


def _body(code: str) -> str:
    lines = [line for line in code.splitlines() if not line.strip().startswith("# ###")]
    return textwrap.indent(textwrap.dedent("\n".join(lines)).strip("\n"), "    ")


def render_migration(project: Project, tables: list[str]) -> tuple[list[str], str, str]:
    """(tables, upgrade body, downgrade body) creating ``tables`` (all: []) as the
    models module declares them; run in a fresh interpreter, which imports the
    project's models module as the service will."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(  # nosec B603 # this interpreter, a fixed script, no shell
        [sys.executable, "-c", _RENDER, str(project.root), project.models_module, *tables],
        cwd=project.root, env=env, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ProjectError(f"{project.rel(project.models_file)} does not import: {last}")
    out = json.loads(result.stdout)
    return out["tables"], _body(out["upgrade"]), _body(out["downgrade"])


def migration_text(revision: str, down: str | None, message: str, upgrade: str,
                   downgrade: str) -> str:
    imports = "from sqlalchemy.dialects import mysql\n" if "mysql." in upgrade else ""
    return (f'"""{message}\n\nRevision ID: {revision}\nRevises: {down or "(none)"}\n'
            f'Create Date: {date.today().isoformat()}\n"""\n\n'
            "from __future__ import annotations\n\n"
            "from typing import Sequence, Union\n\n"
            "import sqlalchemy as sa\nfrom alembic import op\n" + imports + "\n"
            f"revision: str = {revision!r}\n"
            f"down_revision: Union[str, None] = {down!r}\n"
            "branch_labels: Union[str, Sequence[str], None] = None\n"
            "depends_on: Union[str, Sequence[str], None] = None\n\n\n"
            f"def upgrade() -> None:\n{upgrade}\n\n\n"
            f"def downgrade() -> None:\n{downgrade}\n")


def next_revision(versions: Path) -> tuple[str, str | None]:
    """(a new revision id, the current head) of the migrations in ``versions``."""
    from alembic.script import ScriptDirectory

    if not versions.is_dir():
        raise ProjectError(f"no {versions}: the project's migrations are missing")
    try:
        script = ScriptDirectory(str(versions.parent))
        heads = script.get_heads()
        ids = [r.revision for r in script.walk_revisions()]
    except Exception as exc:  # noqa: BLE001  a revision file that does not load
        raise ProjectError(f"{versions}: the migrations do not load ({exc})") from None
    if len(heads) > 1:
        raise ProjectError(f"{versions}: several heads ({', '.join(heads)}); merge them "
                           "first (alembic merge)")
    if all(re.fullmatch(r"\d{4}", i) for i in ids):
        revision = f"{max((int(i) for i in ids), default=0) + 1:04d}"
    else:
        revision = uuid.uuid4().hex[:12]
    return revision, heads[0] if heads else None


def _write(path: Path, text: str, written: list[Path]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    written.append(path)


def add_resource(root: Path | str, name: str, field_specs: list[str] | tuple[str, ...],
                 plural: str | None = None, migration: bool = True,
                 settings: Settings | None = None) -> list[Path]:
    """Add resource ``name`` to the project at ``root``; return the files written."""
    check_name(name)
    fields = parse_fields(field_specs)
    plural = plural or default_plural(name)
    if not NAME_RE.fullmatch(plural):
        raise ProjectError(f"plural {plural!r}: use lower-case letters, digits and "
                           "underscores")
    project = Project.at(root, settings)
    model = camel(name)
    spec_dir = project.spec_file.parent
    spec_name = project.spec_file.name
    path_file, schema_file = spec_dir / f"{name}.path.yaml", spec_dir / f"{name}.schema.yaml"

    api_text = _read(project.spec_file)
    api = _load_yaml(project.spec_file, api_text)
    if name in (api.get("x-apicrud-resources") or {}):
        raise ProjectError(f"resource {name!r} is already declared in x-apicrud-resources "
                           f"of {project.rel(project.spec_file)}")
    for path in (f"/{name}", f"/{name}/{{id}}"):
        if path in (api.get("paths") or {}):
            raise ProjectError(f"{project.rel(project.spec_file)} already has path {path}")
    components = api.get("components") or {}
    if model in (components.get("schemas") or {}):
        raise ProjectError(f"{project.rel(project.spec_file)} already has a schema {model}")
    missing = [f"components.{kind}.{item}" for kind, items in REQUIRED_COMPONENTS.items()
               for item in items if item not in (components.get(kind) or {})]
    if missing:
        raise ProjectError(f"{project.rel(project.spec_file)} lacks {', '.join(missing)}, "
                           f"which the generated path file refers to; add them (see "
                           f"{TEMPLATE / 'openapi' / 'api.yaml'})")
    for f in (path_file, schema_file):
        if f.exists():
            raise ProjectError(f"{project.rel(f)} exists already")
    models_text = _read(project.models_file)
    if re.search(rf"^class {model}\b", models_text, re.M) or \
            re.search(rf"""__tablename__\s*=\s*["']{name}["']""", models_text):
        raise ProjectError(f"{project.rel(project.models_file)} already has a model "
                           f"{model} (table {name})")
    rbac_text = _read(project.rbac_file)
    rbac = _load_yaml(project.rbac_file, rbac_text)
    if name in (rbac.get("policies") or {}):
        raise ProjectError(f"{project.rel(project.rbac_file)} already has a policy for {name}")
    if migration:
        revision, head = next_revision(project.versions)

    ref = spec_name
    new_api = insert_entries(api_text, ("x-apicrud-resources",), f"  {name}: {{}}\n",
                             project.rel(project.spec_file))
    new_api = insert_entries(
        new_api, ("paths",),
        f'  /{name}:\n    $ref: "{name}.path.yaml#/collection"\n'
        f'  /{name}/{{id}}:\n    $ref: "{name}.path.yaml#/item"\n',
        project.rel(project.spec_file))
    new_api = insert_entries(new_api, ("components", "schemas"),
                             f'    {model}:\n      $ref: "{name}.schema.yaml"\n',
                             project.rel(project.spec_file))
    check = _load_yaml(project.spec_file, new_api)
    if name not in (check.get("x-apicrud-resources") or {}) or \
            f"/{name}" not in (check.get("paths") or {}) or \
            model not in ((check.get("components") or {}).get("schemas") or {}):
        raise ProjectError(f"{project.rel(project.spec_file)}: could not add {name} "
                           "(unusual layout); add it by hand")
    new_rbac = insert_entries(rbac_text, ("policies",), policy_entry(name),
                              project.rel(project.rbac_file))
    if name not in (_load_yaml(project.rbac_file, new_rbac).get("policies") or {}):
        raise ProjectError(f"{project.rel(project.rbac_file)}: could not add the policy; "
                           "add it by hand")
    new_models = models_text.rstrip("\n") + "\n" + model_code(name, model, fields)
    path_text = path_yaml(name, plural, model,
                          [f.name for f in fields if f.required]).replace('"api.yaml#', f'"{ref}#')
    written: list[Path] = []
    project.models_file.write_text(new_models, encoding="utf-8")
    try:
        if migration:
            _, up, down = render_migration(project, [name])
    except ProjectError:
        project.models_file.write_text(models_text, encoding="utf-8")
        raise
    written.append(project.models_file)
    _write(path_file, path_text, written)
    _write(schema_file, schema_yaml(name, fields, plural), written)
    _write(project.spec_file, new_api, written)
    _write(project.rbac_file, new_rbac, written)
    if migration:
        _write(project.versions / f"{revision}_{name}.py",
               migration_text(revision, head, f"Add table {name}.", up, down), written)
    return written


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in IGNORED_ENTRIES)


def init_project(target: Path | str, force: bool = False) -> list[Path]:
    """Write a new project into ``target``; return the files written."""
    target = Path(target).resolve()
    if target.exists() and not target.is_dir():
        raise ProjectError(f"{target} is not a folder")
    if target.is_dir() and _entries(target) and not force:
        raise ProjectError(f"{target} is not empty ({', '.join(_entries(target)[:5])}"
                           f"{', ...' if len(_entries(target)) > 5 else ''}); choose a new "
                           "folder or pass --force to write into it")
    versions = target / "migrations" / "versions"
    if versions.is_dir() and any(versions.glob("*.py")):
        raise ProjectError(f"{versions} already holds migrations; init writes a new "
                           "initial one, so start in a new folder")
    name = re.sub(r'["\\{}]', "", target.name) or "project"  # goes into YAML strings
    written: list[Path] = []
    for source in sorted(TEMPLATE.rglob("*")):
        if source.is_dir() or "__pycache__" in source.parts:
            continue
        rel = source.relative_to(TEMPLATE)
        dest = target / rel
        if dest.name.endswith(".tmpl"):
            dest = dest.with_name(dest.name[:-len(".tmpl")])
        text = source.read_text(encoding="utf-8").replace("{{project}}", name)
        _write(dest, text, written)
    versions.mkdir(parents=True, exist_ok=True)
    for example in ("note.path.yaml", "note.schema.yaml"):  # --force: replaced, too
        (target / "openapi" / example).unlink(missing_ok=True)
    from apicrud.config import load_settings

    settings = load_settings(root=target, environ={})
    added = add_resource(target, "note", ["title:string:required", "body:text"],
                         migration=False, settings=settings)
    written += [p for p in added if p not in written]
    project = Project.at(target, settings)
    tables, up, down = render_migration(project, [])
    _write(versions / "0001_initial.py",
           migration_text("0001", None, f"Initial tables: {', '.join(tables)}.", up, down),
           written)
    return written
