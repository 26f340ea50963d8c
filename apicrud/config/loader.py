"""Load and validate apicrud settings ("ServiceConfig").

Settings are declared in ``schema.yaml`` next to this module, optionally
extended by the application's ``service_config.yaml``.  Values come from, in
order of precedence: keyword overrides, environment variables
(``APICRUD_<KEY>`` before ``<KEY>``), a flat YAML values file and the schema
defaults.  Every problem found is collected and reported in one ConfigError,
and secret values are never shown in messages, logs or reprs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from apicrud.errors import ApicrudError

log = logging.getLogger("apicrud.config")

FRAMEWORK_SCHEMA = Path(__file__).with_name("schema.yaml")
MASK = "********"
ENV_PREFIX = "APICRUD_"
# Prefixed variables that steer the loader itself rather than naming a setting.
META_ENV = frozenset({"APICRUD_ROOT", "APICRUD_CONFIG"})
TYPES = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
         "list": (list, tuple), "object": (Mapping,)}
FORMATS = {"password", "path", "url", "email"}
FIELDS = {"type", "default", "description", "format", "enum", "min", "max", "min_length",
          "max_length", "pattern", "items", "nullable", "known_defaults", "plain_env"}
BOOLS = {"1": True, "true": True, "yes": True, "on": True,
         "0": False, "false": False, "no": False, "off": False}
KEY_RE = re.compile(r"[a-z][a-z0-9_]*")


class ConfigError(ApicrudError):
    """Invalid configuration; ``problems`` lists every issue found."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        head = f"invalid configuration ({len(self.problems)} problem(s)):"
        super().__init__("\n  - ".join([head, *self.problems]))


def mask_url(url: str) -> str:
    """``url`` with the password of its user part shown as ``***`` (any scheme).

    ``postgresql+psycopg://app:pw@db/x`` -> ``postgresql+psycopg://app:***@db/x``;
    ``redis://:pw@host:6379/0`` -> ``redis://:***@host:6379/0``. A URL without a
    password is returned unchanged.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    # the user part ends at the last "@" before any query or fragment; a password may
    # hold an unencoded "/", so the last "@" wins (masking too much never leaks)
    end = min((i for i in (rest.find(c) for c in "?#") if i >= 0), default=len(rest))
    userinfo, at, tail = rest[:end].rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}{rest[end:]}"


def _is_type(value: Any, type_name: str) -> bool:
    # bool is a subclass of int, but True is not a sensible port number.
    if isinstance(value, bool) and type_name != "boolean":
        return False
    ok = isinstance(value, TYPES[type_name])
    return ok and not (type_name == "number" and not math.isfinite(value))


def _show(value: Any, secret: bool) -> str:
    if secret:
        return MASK
    text = "null" if value is None else repr(thaw(value))
    return text if len(text) <= 80 else text[:77] + "..."


def _violations(decl: Mapping[str, Any], value: Any) -> list[str]:
    """Return the rules ``value`` breaks (phrased to follow the shown value)."""
    secret, kind = decl.get("format") == "password", decl["type"]
    if value is None:
        return [] if decl.get("nullable") else ["is null, which is not allowed"]
    if not _is_type(value, kind):
        return [f"is not of type {kind}"]
    out = []
    if "enum" in decl and value not in decl["enum"]:
        out.append("is not one of: " + ", ".join(str(v) for v in decl["enum"]))
    if "min" in decl and value < decl["min"]:
        out.append(f"is below the minimum {decl['min']}")
    if "max" in decl and value > decl["max"]:
        out.append(f"is above the maximum {decl['max']}")
    if "min_length" in decl and len(value) < decl["min_length"]:
        out.append(f"is shorter than the minimum length {decl['min_length']}")
    if "max_length" in decl and len(value) > decl["max_length"]:
        out.append(f"is longer than the maximum length {decl['max_length']}")
    if "pattern" in decl and not re.fullmatch(decl["pattern"], value):
        out.append(f"does not match the pattern {decl['pattern']!r}")
    for i, item in enumerate(value if "items" in decl else ()):
        if not _is_type(item, decl["items"]):
            out.append(f"has item {i} ({_show(item, secret)}) not of type {decl['items']}")
    return out


def _named(value: Any, choices: Any) -> bool:
    # Schema fields may hold any YAML value; unhashable ones must not crash the check.
    return isinstance(value, str) and value in choices


def _is_regex(value: Any) -> bool:
    try:
        return isinstance(value, str) and re.compile(value) is not None
    except re.error:
        return False


def _count(value: Any) -> bool:
    return _is_type(value, "integer") and value >= 0


# Schema field -> (setting types it applies to, or None for any; check of its value; wording).
FIELD_RULES = {
    "description": (None, lambda v: isinstance(v, str) and v.strip(), "a non-empty string"),
    "format": (None, lambda v: _named(v, FORMATS), "one of " + ", ".join(sorted(FORMATS))),
    "nullable": (None, lambda v: isinstance(v, bool), "true or false"),
    "enum": (None, lambda v: isinstance(v, list) and v, "a non-empty list"),
    "known_defaults": (None, lambda v: isinstance(v, list) and v, "a non-empty list"),
    "plain_env": (None, lambda v: isinstance(v, bool), "a boolean"),
    "min": (("integer", "number"), lambda v: _is_type(v, "number"), "a number"),
    "max": (("integer", "number"), lambda v: _is_type(v, "number"), "a number"),
    "min_length": (("string", "list"), _count, "an integer >= 0"),
    "max_length": (("string", "list"), _count, "an integer >= 0"),
    "pattern": (("string",), _is_regex, "a valid regular expression"),
    "items": (("list",), lambda v: _named(v, TYPES), "a type name"),
}


def _check_entry(key: Any, decl: Any) -> list[str]:
    """Validate one schema declaration (after any app overrides are merged)."""
    where = f"schema entry {key!r}"
    if not isinstance(key, str) or not KEY_RE.fullmatch(key):
        return [f"{where}: name must match [a-z][a-z0-9_]*"]
    if key in RESERVED:
        return [f"{where}: name clashes with a Settings attribute"]
    if not isinstance(decl, Mapping):
        return [f"{where}: must be a mapping"]
    out = [f"{where}: unknown field {f!r}" for f in sorted(map(str, set(decl) - FIELDS))]
    out += [f"{where}: missing {f!r}" for f in ("type", "default", "description") if f not in decl]
    kind = decl.get("type")
    if not _named(kind, TYPES):
        return out + [f"{where}: type must be one of {', '.join(TYPES)}"]
    for field, (kinds, ok, wording) in FIELD_RULES.items():
        if field in decl and not ok(decl[field]):
            out.append(f"{where}: {field} must be {wording}")
        elif field in decl and kinds and kind not in kinds:
            out.append(f"{where}: {field} applies only to {' or '.join(kinds)} settings")
    if not out and "default" in decl:  # the default must satisfy its own rules
        secret = decl.get("format") == "password"
        out += [f"{where}: default {_show(decl['default'], secret)} {rule}"
                for rule in _violations(decl, decl["default"])]
    return out


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        # str(exc) quotes the offending line, which may hold a secret: report position only.
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{what} {path} is not valid YAML{at}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must contain a YAML mapping")
    return data


def _load_schema(app_schema: Path | None) -> tuple[int, dict[str, dict[str, Any]]]:
    """Merge the framework schema with the app's; return (version, declarations)."""
    problems: list[str] = []
    version: int | None = None
    decls: dict[str, dict[str, Any]] = {}
    for path in [FRAMEWORK_SCHEMA] + ([app_schema] if app_schema else []):
        doc = _read_yaml(path, "settings schema")
        problems += [f"{path}: unknown top-level key {k!r}" for k in doc
                     if k not in ("version", "settings")]
        if "version" in doc:
            if not _is_type(doc["version"], "integer") or doc["version"] < 1:
                problems.append(f"{path}: version must be a positive integer")
            version = doc["version"]
        entries = doc.get("settings") or {}
        if not isinstance(entries, dict):
            problems.append(f"{path}: 'settings' must be a mapping")
            continue
        for key, entry in entries.items():
            if key in decls and isinstance(entry, Mapping):
                # The framework relies on these types; an app may only tune other fields.
                if entry.get("type", decls[key]["type"]) != decls[key]["type"]:
                    problems.append(f"schema entry {key!r}: cannot change the type in {path}")
                decls[key] = {**decls[key], **entry}
            else:
                decls[key] = entry
    for key, decl in decls.items():
        problems += _check_entry(key, decl)
    if problems:
        raise ConfigError(problems)
    return version or 1, decls


# Parsers signal a bad value by ValueError (json.JSONDecodeError is one) or KeyError.
PARSERS: dict[str, Callable[[str], Any]] = {
    "string": str, "integer": lambda t: int(t.strip(), 10), "number": float,
    "boolean": lambda t: BOOLS[t.strip().lower()], "list": json.loads, "object": json.loads}
EXPECTED = {"string": "a string", "integer": "a valid integer", "number": "a valid number",
            "boolean": "one of 1/0/true/false/yes/no/on/off (any case)",
            "list": "a JSON list or comma-separated values", "object": "a JSON object"}


def _from_env(key: str, var: str, text: str, decl: Mapping[str, Any]) -> Any:
    """Convert an environment string by the declared type; ValueError explains a failure."""
    kind, item = decl["type"], decl.get("items", "string")
    if text.strip() == "" and decl.get("nullable") and kind != "string":
        return None  # an empty variable is the only way to say null in the environment
    try:
        if kind == "list" and not text.lstrip().startswith("["):
            return [PARSERS[item](part.strip()) for part in text.split(",") if part.strip()]
        value = PARSERS[kind](text)
        if _is_type(value, kind):
            return value
    except (ValueError, KeyError):
        pass
    shown = _show(text, decl.get("format") == "password")
    what = EXPECTED[kind] + (f" of {item}" if kind == "list" else "")
    raise ValueError(f"{key}: environment variable {var}={shown} is not {what}")


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    return value


def thaw(value: Any) -> Any:
    """A frozen setting (read-only mappings, tuples) as plain dicts and lists."""
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    return value


def _enum_case(decl: Mapping[str, Any], value: Any) -> Any:
    """An enum value given in another case (``DEBUG`` for ``debug``) as the declared one."""
    if isinstance(value, str) and "enum" in decl and value not in decl["enum"]:
        same = [v for v in decl["enum"] if isinstance(v, str) and v.lower() == value.lower()]
        if len(same) == 1:
            return same[0]
    return value


def _finish(root: Path, version: int, decls: Mapping[str, Mapping[str, Any]],
            values: dict[str, Any], sources: dict[str, str], problems: list[str],
            warn: bool = True) -> Settings:
    """Validate ``values``, then raise all ``problems`` at once or build the Settings.

    ``warn``: log the known-default warnings (once per load; :meth:`Settings.replace`
    of already loaded settings does not repeat them).
    """
    for key in values:
        values[key] = _enum_case(decls[key], values[key])
    for key, value in values.items():
        secret = decls[key].get("format") == "password"
        src = f" (from {sources[key]})" if key in sources else ""
        problems += [f"{key}: {_show(value, secret)} {rule}{src}"
                     for rule in _violations(decls[key], value)]
    pd: Any = values.get("per_page_default")
    pm: Any = values.get("per_page_max")
    if _is_type(pd, "integer") and _is_type(pm, "integer") and pd > pm:
        problems.append(f"per_page_default: {pd} is above per_page_max {pm}")
    for key, decl in decls.items():
        if values.get(key) not in decl.get("known_defaults", ()):
            continue
        if values.get("env") == "production":
            problems.append(f"{key} is left at a known default; set it")
        elif warn:  # tolerated for dev/test convenience, but loudly (once per load)
            log.warning("%s is left at a known default; this is refused when env=production", key)
    if problems:
        raise ConfigError(problems)
    return Settings(root, version, decls, values)


def load_settings(root: str | os.PathLike[str] | None = None,
                  app_schema: str | os.PathLike[str] | None = None,
                  config_file: str | os.PathLike[str] | None = None,
                  environ: Mapping[str, str] | None = None,
                  **overrides: Any) -> Settings:
    """Load, merge and validate settings; raise ConfigError listing all problems.

    Relative ``app_schema`` / ``config_file`` paths are taken relative to ``root``.
    """
    environ = os.environ if environ is None else environ
    root_path = Path(os.path.abspath(root or environ.get("APICRUD_ROOT") or os.getcwd()))
    if not root_path.is_dir():
        raise ConfigError(f"project root {root_path} is not a directory")
    # the project's own modules (models_module, its controllers) live in its folder,
    # which is importable as an installed package would be, whoever loads the settings
    # (the command line, gunicorn's workers, alembic's env.py, an embedding program)
    if str(root_path) not in sys.path:
        sys.path.append(str(root_path))
    if app_schema is None and (root_path / "service_config.yaml").is_file():
        app_schema = "service_config.yaml"
    version, decls = _load_schema(root_path / app_schema if app_schema else None)

    problems: list[str] = []
    values = {key: decl["default"] for key, decl in decls.items()}
    sources: dict[str, str] = {}
    config_file = config_file or environ.get("APICRUD_CONFIG")
    if config_file:  # lowest-precedence explicit source
        path = root_path / config_file
        for key, value in _read_yaml(path, "config file").items():
            if key not in decls:
                problems.append(f"{key}: unknown setting in config file {path}")
            else:
                values[key], sources[key] = value, f"config file {path}"
    problems += [f"{var}: environment variable does not name a known setting"
                 for var in sorted(environ) if var.startswith(ENV_PREFIX)
                 and var not in META_ENV and var[len(ENV_PREFIX):].lower() not in decls]
    for key, decl in decls.items():
        # Generic names such as HOST, PORT or ENV are often set by shells and CI for other
        # purposes; such settings declare plain_env: false and read only APICRUD_<KEY>.
        names = (ENV_PREFIX + key.upper(),) + ((key.upper(),) if decl.get("plain_env", True)
                                               else ())
        var = next((v for v in names if v in environ), None)
        if var is not None:
            try:
                values[key] = _from_env(key, var, environ[var], decl)
                sources[key] = f"environment variable {var}"
            except ValueError as exc:
                problems.append(str(exc))
    for key, value in overrides.items():
        if key not in decls:
            problems.append(f"{key}: unknown setting passed as an override")
        else:
            values[key], sources[key] = value, "override"
    return _finish(root_path, version, decls, values, sources, problems)


class Settings(Mapping[str, Any]):
    """Immutable, validated settings; read as ``settings.port`` or ``settings["port"]``.

    Build instances with :func:`load_settings` or :meth:`replace`; the
    constructor trusts its arguments.
    """

    __slots__ = ("_decls", "_root", "_values", "_version")

    def __init__(self, root: Path, schema_version: int,
                 declarations: Mapping[str, Mapping[str, Any]], values: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_root", Path(root))
        object.__setattr__(self, "_version", schema_version)
        object.__setattr__(self, "_decls", _freeze(declarations))
        object.__setattr__(self, "_values", MappingProxyType(
            {k: _freeze(v) for k, v in values.items()}))

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails, i.e. for setting names.
        if not name.startswith("_") and name in self._values:
            return self._values[name]
        raise AttributeError(f"no setting named {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Settings are immutable; use replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Settings are immutable")

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __reduce__(self) -> tuple[Any, ...]:
        # Default slot-state restoring would hit __setattr__; rebuild through __init__ instead
        # (this makes copy, deepcopy and pickle work).
        return (Settings, (self._root, self._version, thaw(self._decls), thaw(self._values)))

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self.as_dict(redact=True).items())
        return f"Settings({body})"

    @property
    def root(self) -> Path:
        """Absolute project root."""
        return self._root

    @property
    def schema_version(self) -> int:
        """Version of the (app) settings schema."""
        return self._version

    @property
    def declarations(self) -> Mapping[str, Mapping[str, Any]]:
        """Read-only mapping of key -> merged schema declaration."""
        return self._decls

    def is_secret(self, key: str) -> bool:
        """True if ``key`` is declared with ``format: password``."""
        return self._decls[key].get("format") == "password"

    def as_dict(self, redact: bool = True) -> dict[str, Any]:
        """Plain (mutable) copy of all values; non-empty secrets masked if ``redact``."""
        return {k: MASK if redact and self.is_secret(k) and v not in ("", None) else thaw(v)
                for k, v in self._values.items()}

    def path(self, key: str) -> Path:
        """Absolute path for a string setting, resolved against :attr:`root`."""
        value = self._values[key]
        if not isinstance(value, str):
            raise TypeError(f"setting {key!r} is not a string path")
        return Path(os.path.normpath(self._root / os.path.expanduser(value)))

    def replace(self, **changes: Any) -> Settings:
        """Return a new validated Settings with ``changes`` applied."""
        problems = [f"{k}: unknown setting passed to replace()" for k in changes
                    if k not in self._decls]
        values = {**self._values, **{k: v for k, v in changes.items() if k in self._decls}}
        return _finish(self._root, self._version, self._decls, values,
                       dict.fromkeys(changes, "replace()"), problems, warn=False)

    @property
    def sqlalchemy_url(self) -> str:
        """``database_url``, or a SQLite file in ``data_dir`` when it is empty."""
        return self.database_url or f"sqlite:///{self.path('data_dir') / 'apicrud.db'}"


# Setting names that would be shadowed by Settings attributes are refused.
RESERVED = frozenset(name for name in dir(Settings) if not name.startswith("_"))
