"""The API and its react-admin dialect: two Flask Blueprints routed from the spec.

:func:`blueprint` serves every operation of the spec under setting ``base_url``
(``/api/v1``); :func:`react_admin_blueprint` serves the same operations under setting
``react_admin_url`` (``/api/v1/ra``) in react-admin's wire dialects
(:mod:`apicrud.react_admin`). ``create_app`` registers both (the second unless
``react_admin_url`` is empty).

Each path of the spec is one URL rule with one view. The view picks the path's operation
by method (``HEAD`` runs the ``GET`` operation) and makes one call,
:func:`apicrud.request_path.dispatch`, which runs the request's stages: the blueprints
register no ``before_request`` or ``after_request`` hooks of their own, so routing through
them costs a dictionary look-up more than a bare application rule, nothing per stage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from flask import Blueprint, Response, request

from apicrud.errors import MethodNotAllowed
from apicrud.i18n import N_
from apicrud.request_path import dispatch, problem_response
from apicrud.spec.operations import Operation, flask_rule_names

if TYPE_CHECKING:
    from apicrud.services import Services

__all__ = ["blueprint", "react_admin_blueprint"]


def blueprint(services: Services) -> Blueprint:
    """The API at ``services.base_url`` (blueprint ``api``)."""
    return _spec_blueprint("api", services, services.base_url, react_admin=False)


def react_admin_blueprint(services: Services) -> Blueprint | None:
    """The react-admin dialect at setting ``react_admin_url`` (blueprint
    ``react_admin``); None when that setting is empty (the dialect is off)."""
    url = services.settings.react_admin_url.rstrip("/")
    if not url:
        return None
    return _spec_blueprint("react_admin", services, url, react_admin=True)


def _spec_blueprint(name: str, services: Services, url_prefix: str, *,
                    react_admin: bool) -> Blueprint:
    bp = Blueprint(name, __name__, url_prefix=url_prefix)
    by_path: dict[str, dict[str, Operation]] = {}
    for op in services.decl.operations:
        by_path.setdefault(op.path, {})[op.method.upper()] = op
    for path, ops in by_path.items():
        # a blueprint's endpoint names may not hold a dot; a path may
        rule, names = flask_rule_names(path)
        bp.add_url_rule(rule, endpoint=path.replace(".", "%2E"),
                        view_func=_view(services, ops, react_admin, names), methods=list(ops))
    return bp


def _view(services: Services, ops: dict[str, Operation], react_admin: bool,
          names: dict[str, str] | None = None) -> Callable[..., Response]:
    """The view of one path: its operation for the request's method, dispatched.
    ``names``: the spec's name of each rule variable renamed for Werkzeug."""

    def view(**path_args: str) -> Response:
        if names:
            path_args = {names.get(k, k): v for k, v in path_args.items()}
        method = request.method
        op = ops.get("GET" if method == "HEAD" and method not in ops else method)
        if op is None:  # a method Werkzeug routed but the spec lacks
            return problem_response(MethodNotAllowed(
                N_("%(method)s is not allowed here", method=method),
                headers={"Allow": ", ".join(sorted(ops))}))
        return dispatch(services, op, path_args, react_admin)

    return view
