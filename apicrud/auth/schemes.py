"""Which credentials may authenticate an operation, from the security schemes it lists.

An operation's ``security`` (or the document's) lists alternatives; each names schemes of
``components.securitySchemes``. A request is authenticated by one credential, whose kind
is its Principal's ``method``:

==========================================  ==========================================
scheme                                      methods it admits
==========================================  ==========================================
``http``, ``scheme: bearer``                ``bearer`` (a token of POST /auth), ``jwt``
                                            (a trusted issuer's token)
``http``, ``scheme: basic``                 ``basic``
``apiKey``, ``in: cookie``                  ``cookie`` (its ``name`` is served as the
                                            ``cookie_name`` setting)
``apiKey``, ``in: header``, X-API-KEY       ``apikey``
``openIdConnect``, ``oauth2``               ``jwt``
any scheme with ``x-bearerInfoFunc``,       ``info:<function>`` (connexion's hooks:
``x-basicInfoFunc`` or ``x-apikeyInfoFunc`` apicrud.connexion_conventions)
==========================================  ==========================================

An empty alternative (``{}``) or an empty list (``security: []``) admits any credential
(the operation needs none). A credential of another kind is refused with 401 on a secured
operation and ignored (the request runs anonymous) on a public one.
"""

from __future__ import annotations

from typing import Any

#: the header the API-key authenticator reads (apicrud.auth.apikeys.HEADER is this)
API_KEY_HEADER = "X-API-KEY"


#: connexion's authenticator hooks (apicrud.connexion_conventions): a scheme naming one
#: admits only the credentials that function accepts, method ``info:<function>``
INFO_FUNC_KEYS = ("x-bearerInfoFunc", "x-basicInfoFunc", "x-apikeyInfoFunc")


def info_function(scheme: dict[str, Any]) -> str | None:
    """The dotted name of the scheme's connexion info function, if it names one."""
    return next((scheme[k] for k in INFO_FUNC_KEYS if isinstance(scheme.get(k), str)), None)


def scheme_methods(scheme: dict[str, Any]) -> frozenset[str]:
    function = info_function(scheme)
    if function:
        return frozenset({f"info:{function}"})
    kind = str(scheme.get("type", "")).lower()
    if kind == "http":
        name = str(scheme.get("scheme", "")).lower()
        return frozenset({"bearer", "jwt"} if name == "bearer" else
                         {"basic"} if name == "basic" else ())
    if kind == "apikey":
        where = scheme.get("in")
        if where == "cookie":
            return frozenset({"cookie"})
        if where == "header" and str(scheme.get("name", "")).lower() == API_KEY_HEADER.lower():
            return frozenset({"apikey"})
        return frozenset()
    if kind in ("openidconnect", "oauth2"):
        return frozenset({"jwt"})
    return frozenset()


def credential_methods(security: list[dict[str, list[str]]], schemes: dict[str, Any],
                       where: str) -> tuple[frozenset[str] | None, list[str]]:
    """(the methods the requirement admits, None for any; problems with it)."""
    if not security:
        return None, []
    methods: set[str] = set()
    problems = []
    for alternative in security:
        if not alternative:
            return None, []  # authentication optional
        names = list(alternative)
        unknown = [n for n in names if n not in schemes]
        if unknown:
            problems.append(f"{where}: security names {', '.join(unknown)}, not in "
                            "components.securitySchemes")
            continue
        if len(names) > 1:
            problems.append(f"{where}: security requirement {{{', '.join(names)}}} asks "
                            "for several credentials at once; apicrud authenticates a "
                            "request by one (list them as alternatives)")
            continue
        admitted = scheme_methods(schemes[names[0]])
        if not admitted:
            problems.append(f"{where}: security scheme {names[0]} is not one apicrud "
                            "authenticates (http bearer/basic, apiKey in a cookie or the "
                            f"{API_KEY_HEADER} header, openIdConnect, oauth2)")
        methods |= admitted
    return frozenset(methods), problems


def serve_cookie_name(spec: dict[str, Any], cookie_name: str) -> None:
    """Name every cookie scheme of the document after the ``cookie_name`` setting (the
    cookie POST /auth sets), so the served document says what the service reads. A
    scheme with an info function (``x-apikeyInfoFunc``) keeps its own cookie: that
    function reads it, and must never be handed apicrud's session token."""
    schemes = (spec.get("components") or {}).get("securitySchemes") or {}
    for scheme in schemes.values():
        if isinstance(scheme, dict) and str(scheme.get("type", "")).lower() == "apikey" \
                and scheme.get("in") == "cookie" and not info_function(scheme):
            scheme["name"] = cookie_name
