"""LDAP login over TLS (LDAPS and StartTLS) against slapd with a CA the test makes.

The server certificate is signed by a test CA; apicrud trusts it through the ldap
setting ``ca_file``. A directory whose certificate comes from a CA apicrud does not
trust is refused quickly with a 503 naming the directory, never trusted and never a
hang; no password is sent to it (the bind comes after the handshake).
"""

from __future__ import annotations

import secrets
import time

import pytest
import requests

import logscan
from instances import start_instance
from ldap_server import SUFFIX, Slapd, issue_cert, make_ca

ROOT_PW = "slapd-root-" + secrets.token_hex(6)
PW = "erin-pw-" + secrets.token_hex(5)
for _secret in (ROOT_PW, PW):
    logscan.SECRETS.add(_secret, "ldap tls test passwords")
PEOPLE = f"ou=people,{SUFFIX}"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("pki"))
    ca_file, ca_cert, ca_key = make_ca(folder, "test-ca")
    rogue_file, _cert, _key = make_ca(folder, "rogue-ca")
    return folder, ca_file, rogue_file, issue_cert(folder, ca_cert, ca_key)


@pytest.fixture(scope="module")
def directory(tmp_path_factory, pki):
    slapd = Slapd(str(tmp_path_factory.mktemp("slapd-tls")), ROOT_PW, tls=pki[3])
    slapd.seed({"erin": {"userPassword": PW, "mail": "erin@corp.example", "cn": "Erin"}},
               admins=[], service_pw="unused-" + secrets.token_hex(4))
    yield slapd
    slapd.stop()


@pytest.fixture(scope="module")
def sites(server, directory, pki):
    _folder, ca_file, rogue_file, _pair = pki
    base = {"bind_dn_template": f"uid={{username}},{PEOPLE}", "timeout": 3}
    made = {
        "ldaps": {"url": directory.ldaps_url, "ca_file": ca_file},
        "starttls": {"url": directory.url, "start_tls": True, "ca_file": ca_file},
        "ldaps_rogue": {"url": directory.ldaps_url, "ca_file": rogue_file},
        "starttls_rogue": {"url": directory.url, "start_tls": True, "ca_file": rogue_file},
    }
    made = {k: start_instance(server.settings, ldap={**base, **v}, account_policy="open")
            for k, v in made.items()}
    yield made
    for inst in made.values():
        inst.stop()


def ldap_login(site, password=PW):
    return requests.post(site.url + "/auth", timeout=30, json={
        "username": "erin", "password": password, "method": "ldap"})


@pytest.mark.parametrize("site", ["ldaps", "starttls"])
def test_sign_in_over_tls_with_the_configured_ca(sites, site):
    resp = ldap_login(sites[site])
    assert resp.status_code == 201, resp.text
    assert resp.json()["username"] == "erin"
    wrong = ldap_login(sites[site], PW + "x")
    assert wrong.status_code == 401  # a real bind over TLS that the directory refused


@pytest.mark.parametrize("site", ["ldaps_rogue", "starttls_rogue"])
def test_certificate_of_an_unknown_ca_is_refused(sites, site, directory):
    started = time.monotonic()
    resp = ldap_login(sites[site])
    assert time.monotonic() - started < 10
    assert resp.status_code == 503, resp.text
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert "directory cannot be reached" in resp.json()["detail"]
    assert "Retry-After" in resp.headers
