"""Unit tests for apicrud.config (schema, loading precedence, validation, Settings)."""

from __future__ import annotations

import copy
import logging
import pickle
import textwrap
from pathlib import Path
from types import MappingProxyType

import pytest

from apicrud.config import ConfigError, Settings, load_settings

SECRET = "s3cret-value-that-must-not-leak"


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, environ: dict[str, str] | None = None, **kw) -> Settings:
    """Load with an explicit (by default empty) environment so tests are hermetic."""
    return load_settings(root=tmp_path, environ=environ or {}, **kw)


def problems_of(tmp_path: Path, environ: dict[str, str] | None = None, **kw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, environ, **kw)
    return info.value.problems


# --- defaults and schema ---------------------------------------------------------------


def test_defaults(tmp_path):
    s = load(tmp_path)
    assert s.env == "dev"
    assert s.port == 8080 and s["port"] == 8080
    assert s.base_url == "/api/v1"
    assert s.openapi_dir == "openapi" and s.openapi_file == "api.yaml"
    assert s.rbac_file == "rbac.yaml" and s.models_module == "models"
    assert s.db_migrate_at_start is True and s.sql_echo is False
    assert s.db_pool_size == 10 and s.workers == 2 and s.host == "127.0.0.1"
    assert s.per_page_default == 25 and s.per_page_max == 1000
    assert s.session_ttl == 86400 and s.id_prefix == "x-"
    assert s.cors_origins == () and s.log_level == "info"
    assert s.database_url == "" and s.redis_url == "" and s.admin_password == ""
    assert s.admin_username == "admin" and s.admin_email == "admin@example.com"
    assert s.login_attempts_max == 10 and s.login_lockout_interval == 600
    assert s.cookie_name == "apicrud_session" and s.public_url == ""


def test_every_declaration_is_documented(tmp_path):
    s = load(tmp_path)
    for key, decl in s.declarations.items():
        assert decl["description"], key
        assert "type" in decl and "default" in decl
        assert s[key] == s.declarations[key]["default"] or key == "cors_origins"


def test_schema_version_and_root(tmp_path):
    s = load(tmp_path)
    assert s.schema_version == 1
    assert s.root == tmp_path.resolve() and s.root.is_absolute()


def test_root_from_environment(tmp_path):
    s = load_settings(environ={"APICRUD_ROOT": str(tmp_path)})
    assert s.root == tmp_path


def test_paths_and_sqlalchemy_url(tmp_path):
    s = load(tmp_path)
    assert s.path("data_dir") == tmp_path / "data"
    assert s.path("openapi_dir") == tmp_path / "openapi"
    assert s.sqlalchemy_url == f"sqlite:///{tmp_path / 'data' / 'apicrud.db'}"
    absolute = load(tmp_path, data_dir=str(tmp_path / "elsewhere"))
    assert absolute.path("data_dir") == tmp_path / "elsewhere"
    pg = load(tmp_path, database_url="postgresql://u:pw@db/app")
    assert pg.sqlalchemy_url == "postgresql://u:pw@db/app"
    with pytest.raises(TypeError):
        s.path("port")


# --- precedence --------------------------------------------------------------------


def test_precedence_each_step(tmp_path):
    cfg = write(tmp_path / "values.yaml", "port: 1001\nworkers: 3\nhost: filehost\n")
    # file beats default
    s = load(tmp_path, config_file=cfg)
    assert (s.port, s.workers, s.host, s.log_level) == (1001, 3, "filehost", "info")
    # env beats file
    s = load(tmp_path, {"APICRUD_PORT": "1002", "APICRUD_WORKERS": "4"}, config_file=cfg)
    assert (s.port, s.workers, s.host) == (1002, 4, "filehost")
    # override beats env
    s = load(tmp_path, {"APICRUD_PORT": "1002", "APICRUD_WORKERS": "4"}, config_file=cfg, port=1003)
    assert (s.port, s.workers, s.host) == (1003, 4, "filehost")


def test_config_file_from_env_var_relative_to_root(tmp_path):
    write(tmp_path / "values.yaml", "log_level: debug\n")
    s = load(tmp_path, {"APICRUD_CONFIG": "values.yaml"})
    assert s.log_level == "debug"


def test_explicit_config_file_beats_env_var(tmp_path):
    write(tmp_path / "a.yaml", "log_level: debug\n")
    write(tmp_path / "b.yaml", "log_level: error\n")
    s = load(tmp_path, {"APICRUD_CONFIG": "a.yaml"}, config_file="b.yaml")
    assert s.log_level == "error"


def test_empty_config_file_is_fine(tmp_path):
    assert load(tmp_path, config_file=write(tmp_path / "v.yaml", "")).port == 8080


def test_bad_config_files(tmp_path):
    assert "cannot read" in problems_of(tmp_path, config_file="missing.yaml")[0]
    write(tmp_path / "list.yaml", "- port\n")
    assert "mapping" in problems_of(tmp_path, config_file="list.yaml")[0]
    write(tmp_path / "broken.yaml", f'secret_key: "{SECRET}\nport: [\n')
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, config_file="broken.yaml")
    msg = str(raised.value)
    assert "not valid YAML" in msg and SECRET not in msg


def test_prefixed_env_beats_plain(tmp_path):
    env = {"APICRUD_REDIS_URL": "redis://prefixed", "REDIS_URL": "redis://plain"}
    assert load(tmp_path, env).redis_url == "redis://prefixed"
    assert load(tmp_path, {"REDIS_URL": "redis://plain"}).redis_url == "redis://plain"
    assert load(tmp_path, {"SESSION_TTL": "900"}).session_ttl == 900
    # generic names (PORT, HOST, ENV) are too often set for other purposes
    assert load(tmp_path, {"PORT": "9000"}).port == 8080
    assert load(tmp_path, {"APICRUD_PORT": "9000"}).port == 9000


def test_plain_undeclared_env_is_ignored_but_prefixed_is_rejected(tmp_path):
    assert load(tmp_path, {"SOME_OTHER_THING": "x", "PATH": "/bin"}).port == 8080
    problems = problems_of(tmp_path, {"APICRUD_PROT": "9000"})
    assert len(problems) == 1 and "APICRUD_PROT" in problems[0]


# --- environment type conversion --------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("1", True), ("TRUE", True), ("yes", True), ("On", True),
    ("0", False), ("false", False), ("NO", False), ("off", False),
])
def test_env_boolean(tmp_path, text, expected):
    assert load(tmp_path, {"APICRUD_SQL_ECHO": text}).sql_echo is expected


def test_env_integer_list_and_object_conversion(tmp_path):
    s = load(tmp_path, {"APICRUD_DB_POOL_SIZE": " 42 ",
                        "APICRUD_CORS_ORIGINS": "https://a.example, https://b.example,"})
    assert s.db_pool_size == 42
    assert s.cors_origins == ("https://a.example", "https://b.example")
    s = load(tmp_path, {"APICRUD_CORS_ORIGINS": '["https://c.example"]'})
    assert s.cors_origins == ("https://c.example",)


def test_env_number_and_object_via_app_schema(tmp_path):
    write(tmp_path / "service_config.yaml", """
        settings:
          ratio: {type: number, default: 0.5, description: A ratio, min: 0, max: 1}
          extra: {type: object, default: {}, description: Free-form options}
          ids: {type: list, items: integer, default: [], description: Some ids}
          limit: {type: integer, default: null, nullable: true, description: Optional limit}
    """)
    env = {"APICRUD_RATIO": "0.25", "APICRUD_EXTRA": '{"a": [1, 2]}', "APICRUD_IDS": "1, 2,3",
           "APICRUD_LIMIT": ""}
    s = load(tmp_path, env)
    assert s.ratio == 0.25 and s.ids == (1, 2, 3) and s.limit is None
    assert isinstance(s.extra, MappingProxyType) and s.extra["a"] == (1, 2)
    problems = problems_of(tmp_path, {"APICRUD_EXTRA": "[1]", "APICRUD_IDS": "1,x",
                                      "APICRUD_RATIO": "nan"})
    assert len(problems) == 3
    assert any("APICRUD_EXTRA" in p and "JSON object" in p for p in problems)
    assert any("APICRUD_IDS" in p and "of integer" in p for p in problems)


def test_env_bad_values_name_key_var_and_rule(tmp_path):
    problems = problems_of(tmp_path, {"APICRUD_PORT": "eighty", "SQL_ECHO": "maybe",
                                      "APICRUD_CORS_ORIGINS": "[not json"})
    assert len(problems) == 3
    port = next(p for p in problems if p.startswith("port:"))
    assert "APICRUD_PORT" in port and "'eighty'" in port and "integer" in port
    echo = next(p for p in problems if p.startswith("sql_echo:"))
    assert "SQL_ECHO" in echo and "true/false" in echo
    assert any(p.startswith("cors_origins:") and "JSON list" in p for p in problems)


def test_env_bad_secret_value_is_masked(tmp_path):
    write(tmp_path / "service_config.yaml", """
        settings:
          api_pin: {type: integer, format: password, default: 1234, description: A secret PIN}
    """)
    problems = problems_of(tmp_path, {"APICRUD_API_PIN": SECRET})
    assert "APICRUD_API_PIN" in problems[0] and "integer" in problems[0]
    assert SECRET not in problems[0] and "********" in problems[0]


# --- unknown keys -----------------------------------------------------------------------


def test_unknown_key_in_file_rejected(tmp_path):
    write(tmp_path / "v.yaml", "prot: 80\n")
    problems = problems_of(tmp_path, config_file="v.yaml")
    assert problems[0].startswith("prot:") and "unknown" in problems[0]


def test_unknown_override_rejected(tmp_path):
    problems = problems_of(tmp_path, prot=80)
    assert problems[0].startswith("prot:") and "unknown" in problems[0]


def test_meta_env_vars_are_not_unknown(tmp_path):
    write(tmp_path / "v.yaml", "")
    assert load(tmp_path, {"APICRUD_ROOT": str(tmp_path), "APICRUD_CONFIG": "v.yaml"})


# --- constraints --------------------------------------------------------------------------


def test_enum(tmp_path):
    (p,) = problems_of(tmp_path, log_level="verbose")
    assert p.startswith("log_level: 'verbose'") and "debug, info, warning, error" in p


def test_min_and_max(tmp_path):
    (p,) = problems_of(tmp_path, port=70000)
    assert p.startswith("port: 70000 is above the maximum 65535")
    (p,) = problems_of(tmp_path, session_ttl=59)
    assert "session_ttl: 59 is below the minimum 60" in p


def test_pattern_is_full_match(tmp_path):
    assert load(tmp_path, id_prefix="").id_prefix == ""
    assert load(tmp_path, id_prefix="ab12-").id_prefix == "ab12-"
    (p,) = problems_of(tmp_path, id_prefix="toolongprefix-")
    assert "does not match the pattern" in p
    (p,) = problems_of(tmp_path, base_url="api/v1")
    assert p.startswith("base_url:") and "pattern" in p


def test_min_length_on_secret_is_masked(tmp_path):
    (p,) = problems_of(tmp_path, secret_key="short")
    assert "secret_key: ******** is shorter than the minimum length 16" in p
    assert "'short'" not in p


def test_max_length_and_items(tmp_path):
    write(tmp_path / "service_config.yaml", """
        settings:
          tags: {type: list, items: string, max_length: 2, default: [], description: Tags}
    """)
    problems = problems_of(tmp_path, tags=["a", 2, "c"])
    assert any("longer than the maximum length 2" in p for p in problems)
    assert any("item 1 (2) not of type string" in p for p in problems)
    (p,) = problems_of(tmp_path, cors_origins=["ok", 5])
    assert p.startswith("cors_origins:") and "not of type string" in p


def test_nullable(tmp_path):
    (p,) = problems_of(tmp_path, port=None)
    assert p.startswith("port: null") and "not allowed" in p
    write(tmp_path / "service_config.yaml", """
        settings:
          port: {nullable: true}
    """)
    assert load(tmp_path, port=None).port is None


def test_type_mismatch_from_file_and_overrides(tmp_path):
    write(tmp_path / "v.yaml", "port: '8080'\nsql_echo: 1\n")
    problems = problems_of(tmp_path, config_file="v.yaml", workers=True)
    assert len(problems) == 3
    assert any(p.startswith("port: '8080' is not of type integer") for p in problems)
    assert any(p.startswith("sql_echo: 1 is not of type boolean") for p in problems)
    assert any(p.startswith("workers: True is not of type integer") for p in problems)


def test_cross_check_page_sizes(tmp_path):
    (p,) = problems_of(tmp_path, per_page_default=500, per_page_max=100)
    assert "per_page_default" in p and "per_page_max" in p


def test_all_problems_reported_at_once(tmp_path):
    write(tmp_path / "v.yaml", "log_level: loud\ntypo_key: 1\n")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"APICRUD_WORKERS": "many", "APICRUD_NOPE": "1"},
             config_file="v.yaml", port=0, secret_key="tiny")
    problems = info.value.problems
    assert len(problems) == 6
    for fragment in ("log_level:", "typo_key:", "APICRUD_WORKERS", "APICRUD_NOPE", "port: 0",
                     "secret_key:"):
        assert any(fragment in p for p in problems), fragment
        assert fragment in str(info.value)


# --- app schema -------------------------------------------------------------------------


def test_app_schema_adds_key_and_overrides_default(tmp_path):
    write(tmp_path / "service_config.yaml", """
        version: 3
        settings:
          greeting:
            type: string
            default: hello
            description: Word used to greet users
          port:
            default: 9090
    """)
    s = load(tmp_path)
    assert s.greeting == "hello" and s.port == 9090 and s.schema_version == 3
    # only the given field changed; the framework constraints still apply
    assert s.declarations["port"]["max"] == 65535
    assert load(tmp_path, {"APICRUD_GREETING": "hi"}).greeting == "hi"


def test_explicit_app_schema_path(tmp_path):
    write(tmp_path / "my_schema.yaml", "settings:\n  port: {default: 7000}\n")
    assert load(tmp_path, app_schema="my_schema.yaml").port == 7000
    assert load(tmp_path).port == 8080


@pytest.mark.parametrize("entry,fragment", [
    ("color: {type: string, default: red}", "missing 'description'"),
    ("color: {type: colour, default: red, description: d}", "type must be one of"),
    ("color: {type: string, default: red, description: d, minimum: 1}", "unknown field"),
    ("color: {type: string, default: red, description: d, enum: [blue]}", "default 'red'"),
    ("color: {type: string, default: red, description: d, pattern: '('}", "pattern"),
    ("color: {type: string, default: red, description: d, min: 1}", "min applies only"),
    ("Color: {type: string, default: red, description: d}", "name must match"),
    ("replace: {type: string, default: red, description: d}", "clashes"),
    ("port: {default: 0}", "default 0 is below the minimum 1"),
    ("port: {type: string}", "cannot change the type"),
])
def test_invalid_schema_entries_are_named(tmp_path, entry, fragment):
    write(tmp_path / "service_config.yaml", "settings:\n  " + entry + "\n")
    problems = problems_of(tmp_path)
    name = entry.split(":")[0]
    assert any(name in p and fragment in p for p in problems), problems


# --- secrets ------------------------------------------------------------------------------


def test_production_refuses_known_default_secret(tmp_path):
    problems = problems_of(tmp_path, {"APICRUD_ENV": "production"})
    assert problems == ["secret_key is left at a known default; set it"]
    s = load(tmp_path, {"APICRUD_ENV": "production", "APICRUD_SECRET_KEY": SECRET})
    assert s.env == "production"


@pytest.mark.parametrize("env", ["dev", "test"])
def test_dev_and_test_allow_known_default_with_warning(tmp_path, caplog, env):
    with caplog.at_level(logging.WARNING, logger="apicrud.config"):
        s = load(tmp_path, env=env)
    assert s.secret_key == "dev-only-secret-key-change-me"
    assert "secret_key is left at a known default" in caplog.text
    assert "dev-only-secret-key-change-me" not in caplog.text


def test_secrets_never_shown(tmp_path, caplog):
    dsn = f"postgresql://user:{SECRET}@db/app"
    with caplog.at_level(logging.DEBUG, logger="apicrud.config"):
        s = load(tmp_path, {"APICRUD_DATABASE_URL": dsn}, secret_key=SECRET)
    assert s.secret_key == SECRET and s.database_url == dsn
    assert s.is_secret("secret_key") and s.is_secret("database_url") and not s.is_secret("port")
    for text in (repr(s), str(s), caplog.text, str(s.as_dict())):
        assert SECRET not in text
    d = s.as_dict()
    assert d["secret_key"] == "********" and d["database_url"] == "********"
    assert d["redis_url"] == "" and d["admin_password"] == ""  # empty stays empty
    assert s.as_dict(redact=False)["secret_key"] == SECRET
    # masked in validation errors too
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"APICRUD_ENV": "staging"}, secret_key=SECRET, admin_password=5)
    assert SECRET not in str(info.value) and "admin_password: ******** is not of type" in str(
        info.value)


# --- Settings object ------------------------------------------------------------------------


def test_immutability(tmp_path):
    s = load(tmp_path, cors_origins=["https://a.example"])
    with pytest.raises(AttributeError):
        s.port = 1
    with pytest.raises(AttributeError):
        del s.port
    with pytest.raises(TypeError):
        s["port"] = 1
    assert isinstance(s.cors_origins, tuple)
    with pytest.raises(TypeError):
        s.declarations["port"]["default"] = 1
    with pytest.raises(TypeError):
        s.declarations["log_level"]["enum"][0] = "x"


def test_unknown_attribute_and_item(tmp_path):
    s = load(tmp_path)
    with pytest.raises(AttributeError, match="prot"):
        _ = s.prot
    with pytest.raises(KeyError):
        _ = s["prot"]
    assert "port" in s and "prot" not in s and s.get("prot") is None


def test_as_dict_is_plain_and_detached(tmp_path):
    write(tmp_path / "service_config.yaml", """
        settings:
          extra: {type: object, default: {a: [1]}, description: Options}
    """)
    s = load(tmp_path)
    d = s.as_dict()
    assert type(d) is dict and d["extra"] == {"a": [1]} and type(d["extra"]) is dict
    d["extra"]["a"].append(2)
    d["port"] = 1
    assert s.extra["a"] == (1,) and s.port == 8080


def test_replace_returns_new_validated_settings(tmp_path):
    s = load(tmp_path)
    t = s.replace(port=9000, log_level="debug")
    assert (t.port, t.log_level, s.port) == (9000, "debug", 8080)
    assert t.root == s.root and t.schema_version == s.schema_version
    with pytest.raises(ConfigError, match="above the maximum"):
        s.replace(port=70000)
    with pytest.raises(ConfigError, match="unknown"):
        s.replace(prot=1)
    with pytest.raises(ConfigError, match="known default"):
        s.replace(env="production")


def test_copy_and_pickle(tmp_path):
    s = load(tmp_path, cors_origins=["https://a.example"])
    assert copy.copy(s) == s and copy.deepcopy(s) == s
    clone = pickle.loads(pickle.dumps(s))
    assert clone == s and clone.root == s.root and clone.cors_origins == s.cors_origins


# --- issue 13: enum case, one warning, masked URLs -----------------------------------------


@pytest.mark.parametrize("given", ["DEBUG", "Debug", "debug"])
def test_enum_setting_accepts_any_case_from_the_environment(tmp_path, given):
    s = load(tmp_path, {"APICRUD_LOG_LEVEL": given})
    assert s.log_level == "debug"
    assert s.replace(log_level="WARNING").log_level == "warning"


def test_enum_setting_still_refuses_an_unknown_value_in_any_case(tmp_path):
    (p,) = problems_of(tmp_path, {"APICRUD_LOG_LEVEL": "LOUD"})
    assert p.startswith("log_level: 'LOUD'") and "debug, info, warning, error" in p


def test_known_default_warning_once_per_load_not_per_replace(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="apicrud.config"):
        s = load(tmp_path)
        s.replace(port=9001).replace(redis_url="redis://127.0.0.1:1/5")
    assert caplog.text.count("secret_key is left at a known default") == 1, caplog.text


@pytest.mark.parametrize("url, shown", [
    ("postgresql+psycopg://app:pw@db:5432/x", "postgresql+psycopg://app:***@db:5432/x"),
    ("redis://:pw@127.0.0.1:6379/5", "redis://:***@127.0.0.1:6379/5"),
    ("redis://user:p/w@h/0?a=b", "redis://user:***@h/0?a=b"),
    ("mysql+pymysql://root@h/x", "mysql+pymysql://root@h/x"),
    ("sqlite:////tmp/a.db", "sqlite:////tmp/a.db"),
    ("unix:///tmp/redis.sock", "unix:///tmp/redis.sock"),
])
def test_mask_url_hides_only_the_password(url, shown):
    from apicrud.config import mask_url

    assert mask_url(url) == shown
