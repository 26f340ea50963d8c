"""The names of apicrud's Redis keys: every key it writes starts with ``apicrud:``.

Modules build their keys here (``key("lockout", digest)`` is ``apicrud:lockout:<digest>``)
rather than spelling the namespace by hand, so one Redis can be shared with other
software and an operator can find (or remove) everything apicrud keeps with
``SCAN MATCH apicrud:*``. The families, and the module that owns each:

=====================================  ==============================================
``apicrud:session:*``, ``sessions:*``  login sessions (auth.sessions)
``apicrud:otk:*``                      one-time tokens: confirmation, reset (auth.tokens)
``apicrud:roles:*``                    membership levels per user (access.roles)
``apicrud:lockout:*``                  failed logins (auth.controller)
``apicrud:identity:*``                 pending address changes (auth.registration)
``apicrud:totp:*``                     used codes, failures (auth.totp)
``apicrud:settings:*``                 account settings cache (auth.account_settings)
``apicrud:oidc:state:*``               OpenID Connect flows in progress (auth.external)
``apicrud:ratelimit:*``                rate-limit windows (ratelimit)
``apicrud:metric:*``, ``metric-*``     usage metrics (metrics.keys)
``apicrud:grants:*``                   grants cache (metrics.grants)
``apicrud:registry*``                  service registry (registry)
``apicrud:broker:*``                   Celery's keys on a Redis broker (worker)
``apicrud:mail:dead``                  undeliverable messages (worker.tasks)
``apicrud:mutex:*``                    distributed locks (mutex)
=====================================  ==============================================
"""

from __future__ import annotations

NAMESPACE = "apicrud"


def key(*parts: object) -> str:
    """``key("totp", "failures", account_id)`` -> ``apicrud:totp:failures:<account_id>``."""
    return ":".join((NAMESPACE, *(str(p) for p in parts)))


def prefix(*parts: object) -> str:
    """The start of a family's keys: ``prefix("grants")`` -> ``apicrud:grants:``."""
    return key(*parts) + ":"
