"""Problem documents (RFC 9457) and the exceptions that carry them.

Controllers and middleware raise a :class:`Problem`; one renderer turns it into an
``application/problem+json`` response. ``message`` repeats ``detail`` because
react-admin shows ``body.message``; ``errors`` maps field -> message, the shape of
react-admin form errors.

``title``, ``detail`` and the ``errors`` messages may be marked texts
(:func:`apicrud.i18n.N_`): :meth:`Problem.render` translates them into the request's
language and says which in ``Content-Language``.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from apicrud.i18n import N_, SOURCE_LANGUAGE, translate, translations

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://apicrud.dev/problems/"


class Problem(Exception):
    """An HTTP-facing error rendered as a problem document."""

    status = 500
    title: str = N_("Internal Server Error")  # a Msg (translated) or plain text
    slug = "internal"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        slug: str | None = None,
        status: int | None = None,
        title: str | None = None,
        **extra: Any,
    ) -> None:
        if status is not None:
            self.status = status
        if title is not None:
            self.title = title
        if slug is not None:
            self.slug = slug
        self.detail = detail or self.title
        self.errors = errors or {}
        self.headers = dict(headers or {})
        self.extra = extra
        super().__init__(self.detail)

    def to_dict(self, instance: str | None = None, language: str = SOURCE_LANGUAGE
                ) -> dict[str, Any]:
        trans = translations(language)
        detail = self._detail(trans)
        body: dict[str, Any] = {
            "type": TYPE_BASE + self.slug,
            "title": translate(self.title, trans),
            "status": self.status,
            "detail": detail,
            "message": detail,
        }
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = {k: translate(v, trans) for k, v in self.errors.items()} \
                if trans is not None else self.errors
        body.update(self.extra)
        return body

    def _detail(self, trans: Any) -> str:
        return translate(self.detail, trans)

    def render(self, instance: str | None = None, language: str = SOURCE_LANGUAGE
               ) -> tuple[bytes, int, dict[str, str]]:
        """The document in ``language`` (a shipped one, see apicrud.i18n.available)."""
        headers = {"Content-Type": PROBLEM_MEDIA_TYPE, "Content-Language": language,
                   **self.headers}
        return (json.dumps(self.to_dict(instance, language)) + "\n").encode(), \
            self.status, headers


class BadRequest(Problem):
    status, title, slug = 400, N_("Bad Request"), "bad-request"


class ValidationProblem(BadRequest):
    """A body or parameter failed validation; ``errors`` names the fields."""

    slug = "validation"

    def __init__(self, errors: dict[str, str], detail: str | None = None, **kw: Any) -> None:
        self._joined = detail is None  # made of the errors: translated with them
        if detail is None:
            detail = "; ".join(f"{k}: {v}" for k, v in errors.items())
        super().__init__(detail, errors=errors, **kw)

    def _detail(self, trans: Any) -> str:
        if self._joined and trans is not None:
            return "; ".join(f"{k}: {translate(v, trans)}" for k, v in self.errors.items())
        return super()._detail(trans)


class Unauthorized(Problem):
    status, title, slug = 401, N_("Unauthorized"), "unauthorized"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="apicrud"'})
        super().__init__(detail or N_("Authentication required"), **kw)


class Forbidden(Problem):
    status, title, slug = 403, N_("Forbidden"), "forbidden"


class NotFound(Problem):
    status, title, slug = 404, N_("Not Found"), "not-found"


class MethodNotAllowed(Problem):
    status, title, slug = 405, N_("Method Not Allowed"), "method-not-allowed"


class Conflict(Problem):
    status, title, slug = 409, N_("Conflict"), "conflict"


class PreconditionFailed(Problem):
    status, title, slug = 412, N_("Precondition Failed"), "precondition-failed"


class PreconditionRequired(Problem):
    status, title, slug = 428, N_("Precondition Required"), "precondition-required"


class PayloadTooLarge(Problem):
    status, title, slug = 413, N_("Payload Too Large"), "payload-too-large"


class UnsupportedMediaType(Problem):
    status, title, slug = 415, N_("Unsupported Media Type"), "unsupported-media-type"


class TooManyRequests(Problem):
    status, title, slug = 429, N_("Too Many Requests"), "too-many-requests"


class ServiceUnavailable(Problem):
    status, title, slug = 503, N_("Service Unavailable"), "unavailable"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"Retry-After": "5"})
        super().__init__(detail, **kw)


_T = TypeVar("_T")


def required(value: _T | None, what: str) -> _T:
    """``value``, which the configuration guarantees (a component create_app always
    installs, a field the resource always declares): RuntimeError naming ``what`` if not."""
    if value is None:
        raise RuntimeError(f"{what} is missing")
    return value


class ApicrudError(Exception):
    """What apicrud reports to a person (a command, a start that cannot go on): the
    message says what is wrong and what to do; no traceback is shown for it."""


class StartupError(ApicrudError):
    """Declarations (spec, policies, models, settings) are inconsistent; lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("refusing to start:\n" + "\n".join(f"  - {p}" for p in self.problems))
