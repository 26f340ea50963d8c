"""The peer: the benchmarked get and find written with Django REST framework.

What a Python developer would pick instead of apicrud: Django 5 + Django REST framework +
django-filter, served by gunicorn sync workers (``gunicorn drfpeer.wsgi``), over the same
tables as unmanaged models (models.py), with the same visibility rule (CONTRACT 5: the
author, public, or a role in the list at or above the message's privacy), the same JSON
(fields, ``author``, ``rbac``, ``items``/``count``/``cursor_next``) and token auth
through a cache: ``POST /api/v1/auth`` checks the Argon2id hash and keeps the token in
Django's Redis cache, where every request reads it, with the caller's memberships (cached
for 300 s, as apicrud caches its roles). Django's own defaults otherwise: persistent
connections (CONN_MAX_AGE), autocommit reads, no health checks.

Only what the report compares: login, get by id, find (page 1 with an exact count or
count=none, keyset cursor). Environment: BENCH_DB_URL, BENCH_REDIS_URL, BENCH_SECRET_KEY.
Needs the ``bench`` extra (``pip install -e '.[bench]'``).
"""
