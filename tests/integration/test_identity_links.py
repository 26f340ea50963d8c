"""``/auth/links``: list and remove the external identities linked to an account.

The links are made in the database as a sign-in through a provider makes them
(test_oidc.py and test_ldap.py test that); everything else goes over HTTP.
"""

from __future__ import annotations

import re
import secrets

import pytest
import requests
from sqlalchemy import select, update

from apicrud.db.base import new_id, utcnow


def add_link(server, user, provider: str = "keycloak") -> str:
    models = server.services.models
    link_id = new_id(server.settings.id_prefix)
    with server.services.db.session() as db, db.begin():
        db.add(models.IdentityLink(
            id=link_id, provider=provider, issuer=f"https://{provider}.example.test",
            subject=secrets.token_hex(8), email=None, account_id=user.account_id,
            uid=user.uid, last_login=utcnow()))
    return link_id


def drop_password(server, user) -> None:
    accounts = server.services.models.Account
    with server.services.db.session() as db, db.begin():
        db.execute(update(accounts).where(accounts.id == user.account_id)
                   .values(password=None))


def link_ids(api, **params) -> list[str]:
    resp = api.get("/auth/links", params=params)
    assert resp.status_code == 200, resp.text
    return [item["id"] for item in resp.json()["items"]]


def test_list_and_remove_own_links(server, user, other_user):
    first, second = add_link(server, user), add_link(server, user, "google")
    theirs = add_link(server, other_user)
    assert link_ids(user.api) == [first, second]  # only the caller's
    items = user.api.get("/auth/links").json()["items"]
    assert items[1]["provider"] == "google" and items[0]["account_id"] == user.account_id
    # date-times as every other record shows them: RFC 3339 in UTC, with microseconds
    for key in ("created", "last_login"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", items[0][key]), items[0]
    assert user.api.delete(f"/auth/links/{first}").status_code == 204
    assert link_ids(user.api) == [second]
    # with a password, the last link may go too
    assert user.api.delete(f"/auth/links/{second}").status_code == 204
    assert link_ids(user.api) == [] and link_ids(other_user.api) == [theirs]
    gone = user.api.delete(f"/auth/links/{first}")
    assert gone.status_code == 404


def test_removal_is_audited(server, user):
    link = add_link(server, user)
    assert user.api.delete(f"/auth/links/{link}").status_code == 204
    table = server.services.audit.table
    with server.services.db.session() as db:
        rows = db.execute(select(table).where(table.c.record_id == link)).mappings().all()
    assert [(r["resource"], r["action"], r["uid"]) for r in rows] == \
        [("identity_link", "delete", user.uid)]


def test_last_way_to_sign_in_stays(server, user):
    first, second = add_link(server, user), add_link(server, user, "ldap")
    drop_password(server, user)
    assert user.api.delete(f"/auth/links/{first}").status_code == 204
    last = user.api.delete(f"/auth/links/{second}")
    assert last.status_code == 409 and last.headers["Content-Type"] == \
        "application/problem+json"
    assert "id" in last.json()["errors"] and "last way to sign in" in last.json()["detail"]
    assert link_ids(user.api) == [second]


# -- attacks ----------------------------------------------------------------------------

def test_another_users_link_is_not_found(server, user, other_user):
    theirs = add_link(server, other_user)
    add_link(server, other_user)
    for path in (f"/auth/links/{theirs}", f"/auth/links/{theirs}x", "/auth/links/" + "a" * 64):
        resp = user.api.delete(path)
        assert resp.status_code == 404, resp.text
    # the same answer as for an id that never existed: nothing tells them apart
    assert user.api.delete(f"/auth/links/{theirs}").json()["detail"] == \
        user.api.delete("/auth/links/nosuch").json()["detail"]
    assert theirs in link_ids(other_user.api)
    snoop = user.api.get("/auth/links", params={"account_id": other_user.account_id})
    assert snoop.status_code == 404
    assert requests.get(server.url + "/auth/links", timeout=30).status_code == 401
    assert requests.delete(server.url + f"/auth/links/{theirs}", timeout=30) \
        .status_code == 401
    assert theirs in link_ids(other_user.api)


def test_admins_list_and_unlink_for_others(server, admin, other_user):
    first, second = add_link(server, other_user), add_link(server, other_user)
    assert link_ids(admin.api, account_id=other_user.account_id) == [first, second]
    assert admin.api.delete(f"/auth/links/{first}").status_code == 204
    drop_password(server, other_user)
    # the last-way rule binds administrators too
    assert admin.api.delete(f"/auth/links/{second}").status_code == 409
    assert link_ids(other_user.api) == [second]


@pytest.mark.parametrize("method", ["put", "patch", "post"])
def test_no_other_methods(user, method):
    link = "nosuch"
    assert getattr(user.api, method)(f"/auth/links/{link}", json={}).status_code == 405
