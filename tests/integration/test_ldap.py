"""LDAP login against a real OpenLDAP server (slapd) started by the tests on loopback.

From the attacker's side first: wrong password and unknown user look the same, an
empty or wildcard-laden name finds nobody, guessing is locked out as for passwords, an
unreachable directory is a quick 503. Then sign-ins: bind DN template and
search-then-bind, accounts made or found as account_policy says, and the directory
group that makes administrators.
"""

from __future__ import annotations

import secrets
import time

import pytest
import requests
from ldap3 import MODIFY_DELETE

import logscan
from apicrud.errors import StartupError
from instances import new_account, start_instance
from ldap_server import SUFFIX, Slapd, free_port

ROOT_PW = "slapd-root-" + secrets.token_hex(6)
SERVICE_PW = "slapd-service-" + secrets.token_hex(6)
PW = {u: f"{u}-pw-" + secrets.token_hex(5) for u in ("alice", "bob", "carol", "dave")}
for _secret in (ROOT_PW, SERVICE_PW, *PW.values()):
    logscan.SECRETS.add(_secret, "ldap test passwords")
PEOPLE = f"ou=people,{SUFFIX}"
ADMINS = f"cn=apicrud-admins,ou=groups,{SUFFIX}"


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    slapd = Slapd(str(tmp_path_factory.mktemp("slapd")), ROOT_PW)
    people = {u: {"userPassword": pw, "mail": f"{u}-{secrets.token_hex(3)}@corp.example",
                  "cn": u.title()} for u, pw in PW.items()}
    slapd.seed(people, admins=["alice"], service_pw=SERVICE_PW)
    slapd.people = people
    yield slapd
    slapd.stop()


@pytest.fixture(scope="module")
def sites(server, directory):
    template = {"url": directory.url, "bind_dn_template": f"uid={{username}},{PEOPLE}",
                "admin_group": ADMINS, "timeout": 3}
    search = {"url": directory.url, "search_base": PEOPLE,
              "search_filter": "(&(objectClass=inetOrgPerson)(uid={username}))",
              "bind_dn": f"cn=apicrud,ou=services,{SUFFIX}", "timeout": 3}
    down = {"url": f"ldap://127.0.0.1:{free_port()}", "bind_dn_template": "uid={username}",
            "timeout": 2}
    made = {
        "open": start_instance(server.settings, ldap=template, account_policy="open"),
        "closed": start_instance(server.settings, ldap=search, account_policy="closed",
                                 ldap_bind_password=SERVICE_PW),
        "down": start_instance(server.settings, ldap=down),
        "nopassword": start_instance(server.settings, ldap=template,
                                     auth_methods=["ldap"]),
    }
    yield made
    for inst in made.values():
        inst.stop()


def ldap_login(site, username, password, **more):
    return requests.post(site.url + "/auth", timeout=30, json={
        "username": username, "password": password, "method": "ldap", **more})


def refused(resp, status, words):
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert words in resp.json()["detail"], resp.json()


# -- refusals ---------------------------------------------------------------------------

def test_wrong_password_and_unknown_user_look_the_same(sites):
    wrong = ldap_login(sites["open"], "bob", PW["bob"] + "x")
    unknown = ldap_login(sites["open"], "nobody" + secrets.token_hex(3), PW["bob"])
    refused(wrong, 401, "invalid username or password")
    refused(unknown, 401, "invalid username or password")
    assert wrong.json()["detail"] == unknown.json()["detail"]
    refused(ldap_login(sites["closed"], "bob", PW["bob"] + "x"), 401, "invalid")


def test_empty_password_is_no_anonymous_bind(sites):
    resp = ldap_login(sites["open"], "bob", "")
    assert resp.status_code == 400  # the body schema: password has at least one character
    refused(ldap_login(sites["open"], "bob", " "), 401, "invalid")  # a real, wrong password


@pytest.mark.parametrize("name", ["*", "bob)(uid=*", "b*", "bob,ou=people", "\\2a"])
def test_filter_and_dn_injection_find_nobody(sites, name):
    refused(ldap_login(sites["closed"], name, PW["bob"]), 401, "invalid")
    refused(ldap_login(sites["open"], name, PW["bob"]), 401, "invalid")


def test_guessing_is_locked_out(sites):
    name = "guess" + secrets.token_hex(3)
    codes = [ldap_login(sites["open"], name, "wrong-password").status_code
             for _ in range(7)]
    assert codes[:5] == [401] * 5 and codes[-1] == 429, codes


def test_unreachable_directory_is_a_quick_503(sites):
    started = time.monotonic()
    resp = ldap_login(sites["down"], "bob", PW["bob"])
    refused(resp, 503, "directory cannot be reached")
    assert time.monotonic() - started < 5


def test_not_configured_is_404(server):
    refused(requests.post(server.url + "/auth", timeout=30, json={
        "username": "bob", "password": "x" * 12, "method": "ldap"}), 404, "not enabled")


def test_password_login_can_be_turned_off(sites):
    name, password, _ = new_account(sites["nopassword"].services)
    refused(requests.post(sites["nopassword"].url + "/auth", timeout=30,
                          json={"username": name, "password": password}), 403, "disabled")
    methods = requests.get(sites["nopassword"].url + "/auth/methods", timeout=30).json()
    assert methods["methods"] == ["ldap"]


# -- sign-ins ---------------------------------------------------------------------------

def test_bind_template_login_provisions_an_account(sites, directory):
    resp = ldap_login(sites["open"], "bob", PW["bob"])
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["username"] == "bob" and body["roles"] == ["user"]
    me = requests.get(sites["open"].url + "/auth", timeout=30,
                      headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200 and me.json()["uid"] == body["uid"]
    again = ldap_login(sites["open"], "bob", PW["bob"])
    assert again.status_code == 201 and again.json()["uid"] == body["uid"]


def test_group_membership_makes_an_admin_and_leaving_it_ends_that(sites, directory):
    resp = ldap_login(sites["open"], "alice", PW["alice"])
    assert resp.status_code == 201, resp.text
    assert "admin" in resp.json()["roles"]
    with directory.admin() as conn:
        conn.modify(ADMINS, {"member": [(MODIFY_DELETE, [f"uid=alice,{PEOPLE}"])]})
    try:
        again = ldap_login(sites["open"], "alice", PW["alice"])
        assert again.status_code == 201 and "admin" not in again.json()["roles"]
    finally:
        from ldap3 import MODIFY_ADD

        with directory.admin() as conn:
            conn.modify(ADMINS, {"member": [(MODIFY_ADD, [f"uid=alice,{PEOPLE}"])]})


def test_closed_search_then_bind_finds_the_account_by_email(sites, directory):
    site = sites["closed"]
    refused(ldap_login(site, "dave", PW["dave"]), 403, "no account")
    services = site.services
    with services.db.session() as db, db.begin():
        from helpers import random_account

        _, _, uid, _ = random_account(db, services.settings, prefix="c")
        db.get(services.models.Person, uid).identity = directory.people["carol"]["mail"]
    resp = ldap_login(site, "carol", PW["carol"])
    assert resp.status_code == 201, resp.text
    assert resp.json()["uid"] == uid


def test_bad_ldap_settings_stop_the_start(server):
    for entry, words in [({"url": "http://x"}, "ldap:// or ldaps://"),
                         ({"url": "ldap://x"}, "bind_dn_template, or search_base"),
                         ({"url": "ldap://x", "bind_dn_template": "uid=x"}, "{username}"),
                         ({"url": "ldap://x", "bind_dn_template": "uid={username}",
                           "timeout": 0}, "timeout")]:
        with pytest.raises(StartupError) as exc:
            start_instance(server.settings, ldap=entry)
        assert words in str(exc.value)
