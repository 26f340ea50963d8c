"""The projects application served for the tests: ``create_app`` from this project's
folder on a loopback port, every response carrying ``X-Test-Statements``, the number of
SQL statements its request ran (a wrapper of these tests, not of the application).

Usage: ``python tests/serve_counting.py USER...`` from the project folder, with
APICRUD_DATA_DIR (and optionally APICRUD_DATABASE_URL / APICRUD_REDIS_URL) set; creates
the accounts named (password: name + PROJECTS_TEST_SUFFIX, reset on a kept database),
prints one JSON line {"url": ..., "uids": {name: uid}} and serves until killed.
"""

from __future__ import annotations

import json
import os
import sys
import threading

from sqlalchemy import event, select
from werkzeug.serving import make_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(names: list[str]) -> None:
    sys.path.insert(0, ROOT)
    from apicrud.app import create_app
    from apicrud.auth.accounts import create_account
    from apicrud.auth.passwords import hash_password

    app = create_app(ROOT)
    services = app.extensions["apicrud"]
    counter = threading.local()

    def count(*_args):
        counter.n = getattr(counter, "n", 0) + 1

    event.listen(services.db.engine, "before_cursor_execute", count)
    uids = {}
    models = services.models
    suffix = os.environ.get("PROJECTS_TEST_SUFFIX", "-pw-0123456789")
    with services.db.session() as session, session.begin():
        for name in names:
            acct = session.execute(select(models.Account).where(
                models.Account.name == name)).scalar_one_or_none()
            if acct is not None:  # from an earlier run: this run's password
                acct.password = hash_password(name + suffix)
            else:
                acct, _ = create_account(session, models, username=name,
                                         email=f"{name}@example.com", password=name + suffix,
                                         is_admin=name == "root",
                                         id_prefix=services.settings.id_prefix)
            uids[name] = acct.uid

    def wsgi(environ, start_response):
        counter.n = 0

        def start(status, headers, exc_info=None):
            return start_response(status, [*headers, ("X-Test-Statements", str(counter.n))],
                                  exc_info)
        return app(environ, start)

    httpd = make_server("127.0.0.1", 0, wsgi, threaded=True)
    print(json.dumps({"url": f"http://127.0.0.1:{httpd.server_port}{services.base_url}",
                      "uids": uids}), flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
