"""The request path's parts that need no server: which credentials a security
requirement admits (and which requirements apicrud refuses at start-up), and how the
problem map finds the handler of an exception by its class hierarchy."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from apicrud.auth.schemes import credential_methods
from apicrud.errors import Conflict, NotFound, Problem
from apicrud.request_path import DEFAULT_STAGES, ProblemMap, request_id

SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer"},
    "basic": {"type": "http", "scheme": "Basic"},
    "cookie": {"type": "apiKey", "in": "cookie", "name": "anything"},
    "apikey": {"type": "apiKey", "in": "header", "name": "X-API-KEY"},
    "oidc": {"type": "openIdConnect", "openIdConnectUrl": "https://idp.example/.well-known"},
    "query": {"type": "apiKey", "in": "query", "name": "key"},
}


@pytest.mark.parametrize("security, methods", [
    ([], None),
    ([{}], None),
    ([{"bearer": []}, {}], None),
    ([{"bearer": []}], {"bearer", "jwt"}),
    ([{"basic": []}, {"cookie": []}], {"basic", "cookie"}),
    ([{"apikey": []}], {"apikey"}),
    ([{"oidc": ["openid"]}], {"jwt"}),
])
def test_what_a_requirement_admits(security, methods):
    admitted, problems = credential_methods(security, SCHEMES, "GET /x")
    assert problems == []
    assert admitted == (None if methods is None else frozenset(methods))


@pytest.mark.parametrize("security, message", [
    ([{"nope": []}], "GET /x: security names nope, not in components.securitySchemes"),
    ([{"bearer": [], "apikey": []}], "asks for several credentials at once"),
    ([{"query": []}], "security scheme query is not one apicrud authenticates"),
])
def test_requirements_apicrud_cannot_honour_are_start_up_problems(security, message):
    _, problems = credential_methods(security, SCHEMES, "GET /x")
    assert len(problems) == 1 and message in problems[0]


def test_the_nearest_class_of_an_exception_decides():
    problems = ProblemMap()
    problems.register(Exception, lambda exc, call: Problem("internal error"))
    problems.register(DBAPIError, lambda exc, call: Problem("database", status=503))
    problems.register(IntegrityError, lambda exc, call: Conflict("taken"))
    problems.register(Problem, lambda exc, call: exc)
    integrity = IntegrityError("INSERT", {}, Exception("dup"))
    operational = OperationalError("SELECT", {}, Exception("gone"))
    assert problems.problem_for(integrity, None).status == 409
    assert problems.problem_for(operational, None).status == 503  # via DBAPIError
    assert problems.problem_for(NotFound("no"), None).status == 404
    assert problems.problem_for(KeyError("x"), None).detail == "internal error"


def test_an_exception_nothing_maps_is_raised_again():
    with pytest.raises(KeyError):
        ProblemMap().problem_for(KeyError("x"), None)


def test_the_stages_run_in_the_documented_order():
    assert [s.__name__ for s in DEFAULT_STAGES] == [
        "authenticate", "check_scheme", "load_roles", "open_context", "choose_language",
        "run_guards", "read_parameters", "read_body", "handle", "commit"]


@pytest.mark.parametrize("given", [None, "", "x" * 65, "two words", "a\nb", "id;drop",
                                   "é-accent"])
def test_a_request_without_a_plain_id_gets_a_fresh_random_one(given):
    headers = {} if given is None else {"X-Request-ID": given}
    made = {request_id(SimpleNamespace(headers=headers)) for _ in range(200)}
    assert len(made) == 200 and all(re.fullmatch(r"[0-9a-f]{32}", m) for m in made)


@pytest.mark.parametrize("given", ["trace-01", "a" * 64, "svc:1.2_3"])
def test_a_callers_plain_id_is_kept(given):
    assert request_id(SimpleNamespace(headers={"X-Request-ID": given})) == given
