"""Watch a whole test run for secrets in logs (see test_no_secrets_in_logs.py).

Two recorders, installed once by ``tests/conftest.py`` when pytest starts:

- :data:`CAPTURE`, a handler on the root logger at DEBUG, keeps the text of every log
  record (message, exception text and ``extra`` fields) from the service side:
  apicrud, werkzeug's access log, celery, SQLAlchemy, ... Records of the test's own
  clients and fixtures (``urllib3``, the ``mail.log`` SMTP test server) are not
  service logs and are left out.
- :data:`SECRETS` learns every secret the suite handles, by watching each HTTP request
  made through ``requests``: passwords, one-time codes and tokens sent in JSON bodies,
  credentials in headers and cookies, and tokens, API keys, TOTP secrets, backup codes
  and CSRF tokens in JSON responses and ``Set-Cookie``. Settings marked secret are
  added by the test module.

Root's level is set to DEBUG before every test, because libraries (a celery worker
starting, ``caplog.set_level``) may lower it for a while.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

import requests

#: JSON keys whose string values are secrets (in requests and responses)
SECRET_KEYS = frozenset({"password", "new_password", "otp", "code", "token", "apikey",
                         "secret", "csrf_token", "backup_codes"})
#: loggers of the test harness, not of the service
TEST_SIDE = ("urllib3", "mail.log", "requests", "charset_normalizer", "asyncio", "filelock")
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}
_FORMATTER = logging.Formatter()


def record_text(record: logging.LogRecord) -> list[tuple[str, str]]:
    """(field, text) pairs of a record: its message, exception and extra fields."""
    try:
        out = [("message", record.getMessage())]
    except Exception:  # noqa: BLE001  a broken format string still shows its parts
        out = [("message", f"{record.msg!r} {record.args!r}")]
    if record.exc_info:
        out.append(("exception", _FORMATTER.formatException(record.exc_info)))
    elif record.exc_text:
        out.append(("exception", record.exc_text))
    if record.stack_info:
        out.append(("stack", record.stack_info))
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_"):
            out.append((key, value if isinstance(value, str) else repr(value)))
    return out


class Capture(logging.Handler):
    """Keeps the text of every service-side record."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[str, int, list[tuple[str, str]]]] = []
        self._mutex = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(TEST_SIDE):
            return
        entry = (record.name, record.levelno, record_text(record))
        with self._mutex:
            self.records.append(entry)


class Secrets:
    """Every secret seen so far, with where it was seen."""

    def __init__(self) -> None:
        self.found: dict[str, str] = {}
        self._mutex = threading.Lock()

    def add(self, value: Any, where: str) -> None:
        if isinstance(value, (list, tuple)):
            for item in value:
                self.add(item, where)
            return
        if not isinstance(value, str):
            return
        value = value.strip()
        if "://" in value:  # a URL (e.g. GET /auth's resource -> URL map has key "apikey")
            return
        key = re.fullmatch(r"ak[0-9a-f]{12}\.(.+)", value)
        if key:  # an API key: its prefix is public (it is logged), its secret part is not
            self.add(key.group(1), where)
        digits = value.isdigit() and 6 <= len(value) <= 8
        # short or plain words ("wrong", "password") are not worth a false alarm
        if not digits and (len(value) < 10 or len(set(value)) < 6):
            return
        with self._mutex:
            self.found.setdefault(value, where)

    def add_json(self, doc: Any, where: str, depth: int = 0) -> None:
        if depth > 16:  # tests send absurdly deep bodies on purpose
            return
        if isinstance(doc, dict):
            for key, value in doc.items():
                if key in SECRET_KEYS:
                    self.add(value, f"{where}: {key}")
                else:
                    self.add_json(value, where, depth + 1)
        elif isinstance(doc, list):
            for item in doc:
                self.add_json(item, where, depth + 1)

    def add_headers(self, headers: Any, where: str) -> None:
        for name, value in (headers or {}).items():
            lname = str(name).lower()
            if not isinstance(value, str):
                continue
            if lname == "authorization":
                scheme, _, cred = value.partition(" ")
                self.add(cred, f"{where}: Authorization")
                if scheme.lower() == "basic":
                    try:
                        decoded = base64.b64decode(cred).decode()
                        self.add(decoded.partition(":")[2], f"{where}: Basic token")
                    except (binascii.Error, UnicodeDecodeError):
                        pass
            elif lname in ("x-api-key", "x-csrf-token"):
                self.add(value, f"{where}: {name}")
            elif lname in ("cookie", "set-cookie"):
                for part in value.split(";"):
                    self.add(part.partition("=")[2], f"{where}: {name}")

    def items(self) -> list[tuple[str, str]]:
        with self._mutex:
            return list(self.found.items())


CAPTURE = Capture()
SECRETS = Secrets()
_original_request = requests.Session.request


def _watching_request(self, method, url, *args, **kwargs):
    where = f"{method} {url.split('?')[0]}"
    SECRETS.add_headers(self.headers, where)
    SECRETS.add_headers(kwargs.get("headers"), where)
    if kwargs.get("json") is not None:
        SECRETS.add_json(kwargs["json"], where)
    elif isinstance(kwargs.get("data"), (str, bytes)):
        try:
            SECRETS.add_json(json.loads(kwargs["data"]), where)
        except (ValueError, UnicodeDecodeError, RecursionError):
            pass  # not JSON, or deliberately absurd: nothing to learn from it
    resp = _original_request(self, method, url, *args, **kwargs)
    try:
        if "json" in resp.headers.get("Content-Type", ""):
            SECRETS.add_json(resp.json(), f"response to {where}")
    except (ValueError, RecursionError):
        pass
    for cookie in resp.cookies:
        SECRETS.add(cookie.value, f"cookie from {where}")
    return resp


def install() -> None:
    """Start recording (idempotent)."""
    root = logging.getLogger()
    if CAPTURE not in root.handlers:
        root.addHandler(CAPTURE)
    root.setLevel(logging.DEBUG)
    requests.Session.request = _watching_request  # type: ignore[method-assign]


def keep_level() -> None:
    """Root back at DEBUG (a celery worker or a test may have raised it)."""
    logging.getLogger().setLevel(logging.DEBUG)


def run_last(items: list, name: str = "test_no_secrets_in_logs.py::test_zz_") -> None:
    """Move the final scan to the end of the run, whatever order files are collected in."""
    last = [i for i in items if name in i.nodeid]
    if last:
        items[:] = [i for i in items if name not in i.nodeid] + last


_WORD = re.compile(r"[A-Za-z0-9_-]{8,}")
# a number of its own; not the fraction of a time or a decimal ("11:44:19.123456",
# "0.123456"), which may hold any six digits
_NUMBER = re.compile(r"(?<![0-9A-Za-z])(?<![0-9]\.)[0-9]{6,8}(?![0-9A-Za-z])")
_KEY = 8  # secrets are indexed by their first _KEY characters


def leaks(records: Iterable[tuple[str, int, list[tuple[str, str]]]],
          secrets: Iterable[tuple[str, str]]) -> list[str]:
    """One line per (record field, secret) where the secret shows up.

    Fast enough for a whole suite's logs and thousands of secrets: secrets made of word
    characters are looked up by their first characters at each position of each word
    run; one-time codes only as numbers of their own; the few others by substring.
    """
    codes: dict[str, str] = {}
    words: dict[str, list[tuple[str, str]]] = {}
    others: list[tuple[str, str]] = []
    for secret, where in secrets:
        if secret.isdigit():
            codes[secret] = where
        elif re.fullmatch(r"[A-Za-z0-9_-]+", secret):
            words.setdefault(secret[:_KEY], []).append((secret, where))
        else:
            others.append((secret, where))
    out = []
    for logger, level, fields in records:
        for field, text in fields:
            hits: dict[str, str] = {}
            if field != "request_id":  # random hex, which may hold any six digits
                for m in _NUMBER.finditer(text):
                    if m.group() in codes:
                        hits[m.group()] = codes[m.group()]
            for m in _WORD.finditer(text):
                w = m.group()
                for i in range(len(w) - _KEY + 1):
                    for secret, where in words.get(w[i:i + _KEY], ()):
                        if w.startswith(secret, i):
                            hits[secret] = where
            for secret, where in others:
                if secret in text:
                    hits[secret] = where
            for secret, where in hits.items():
                shown = text.replace(secret, "<SECRET>")[:300]
                out.append(f"{logger} ({logging.getLevelName(level)}) field {field}: "
                           f"secret from {where}: {shown!r}")
    return out
