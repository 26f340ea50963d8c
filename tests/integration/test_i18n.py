"""Server messages in the user's language, over HTTP: problem documents by
``Accept-Language`` or the account's ``settings.locale``, and registration mail (real
SMTP server and worker, as in test_registration.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from apicrud.auth.account_settings import AccountSettings
from helpers import assert_problem
from mailhelp import token_of
from test_registration import identity, mail_server, smtp  # noqa: F401 (fixtures)


def login_problem(server, language: str | None):
    headers = {"Accept-Language": language} if language else {}
    return server.anonymous().post("/auth", json={"username": "nobody"}, headers=headers)


@pytest.mark.parametrize("language,title,required", [
    ("de", "Ungültige Anfrage", "ist erforderlich"),
    ("fr-CH, en;q=0.5", "Requête incorrecte", "est obligatoire"),
    ("es-MX", "Solicitud incorrecta", "es obligatorio"),
])
def test_problem_documents_come_in_the_language_asked_for(server, language, title, required):
    resp = login_problem(server, language)
    body = assert_problem(resp, 400, "password")
    assert resp.headers["Content-Language"] == language[:2]
    assert body["title"] == title and body["errors"]["password"] == required
    assert body["detail"] == f"password: {required}" == body["message"]
    assert body["type"].endswith("/validation")  # the type never changes


def test_english_without_a_header_and_for_unknown_languages(server):
    for language in (None, "it, pt;q=0.8", "*", "de;q=0"):
        resp = login_problem(server, language)
        body = assert_problem(resp, 400, "password")
        assert resp.headers["Content-Language"] == "en", language
        assert body["title"] == "Bad Request" and body["errors"]["password"] == "is required"


def test_q_values_choose(server):
    resp = login_problem(server, "fr;q=0.4, it;q=0.9, de;q=0.7")
    assert resp.headers["Content-Language"] == "de"


def test_problems_outside_the_operations_and_before_sign_in(server):
    gone = server.anonymous().get("/no/such/thing", headers={"Accept-Language": "de"})
    body = assert_problem(gone, 404)
    assert (body["title"], body["detail"]) == ("Nicht gefunden", "diese URL gibt es nicht")
    assert gone.headers["Content-Language"] == "de"
    bad = server.anonymous().post("/auth", json={"username": "nobody", "password": "x" * 12},
                                  headers={"Accept-Language": "fr"})
    body = assert_problem(bad, 401)
    assert body["title"] == "Non authentifié"
    assert body["detail"] == "nom d'utilisateur ou mot de passe invalide"


def test_an_account_with_locale_de_gets_german_problems(server, user):
    own = user.api.get("/settings").json()["items"][0]
    assert user.api.patch(f"/settings/{own['id']}", json={"locale": "de_DE"}).status_code == 200
    for headers in ({}, {"Accept-Language": "fr"}):  # the account's choice wins
        resp = user.api.get("/settings/nosuchid", headers=headers)
        body = assert_problem(resp, 404)
        assert resp.headers["Content-Language"] == "de"
        assert body["title"] == "Nicht gefunden" and body["detail"].endswith("nicht gefunden")
    # a locale without a catalog: the request decides
    assert user.api.patch(f"/settings/{own['id']}", json={"locale": "it_IT"}).status_code == 200
    resp = user.api.get("/settings/nosuchid", headers={"Accept-Language": "es"})
    assert resp.headers["Content-Language"] == "es"
    assert assert_problem(resp, 404)["title"] == "No encontrado"


def test_registration_in_german_gets_german_mail_and_keeps_the_language(mail_server, smtp):
    username, address = identity()
    anon = mail_server.anonymous()
    resp = anon.post("/account", json={"username": username, "email": address,
                                       "name": "Grete"}, headers={"Accept-Language": "de"})
    assert resp.status_code == 201, resp.text
    msg = smtp.wait_mail(address)
    assert msg["Subject"].startswith("Bestätigen Sie Ihr Konto bei")
    text = msg.get_content()
    assert "Hallo Grete," in text and "Bestätigungstoken" in text and "läuft in" in text
    assert "https://api.example.test/api/v1/auth/confirm" in text
    token_of(msg)  # the token line reads as in English
    # the account's settings.locale starts as the language of its registration
    account_id = resp.json()["id"]
    assert AccountSettings(account_id, mail_server.services).locale == "de"
    # a problem during registration comes in the caller's language too
    bad = anon.post("/account", json={"username": f"x{username}", "email": "not-an-address"},
                    headers={"Accept-Language": "de"})
    assert assert_problem(bad, 400, "email")["errors"]["email"] == \
        "ist ungültig (erwartet: E-Mail-Adresse)"


def test_an_account_whose_locale_is_de_gets_a_german_confirmation(mail_server, smtp):
    username, address = identity()
    anon = mail_server.anonymous()
    assert anon.post("/account", json={"username": username, "email": address}) \
        .status_code == 201
    first = smtp.wait_mail(address)
    assert first["Subject"].startswith("Confirm your")  # no header: English
    services = mail_server.services
    model, accounts = services.models.Settings, services.models.Account
    with services.db.session() as db:
        account_id = db.execute(select(accounts.id).where(accounts.name == username)).scalar_one()
    settings = AccountSettings(account_id, services)
    assert settings.locale == "en_US"  # created with the defaults
    with services.db.session() as db, db.begin():
        db.execute(update(model).where(model.account_id == account_id).values(locale="de"))
    settings.uncache()
    # a pending account asking again (registration open) gets a fresh confirmation, in
    # its own language whatever the request says
    resp = anon.post("/auth/reset", json={"username": username},
                     headers={"Accept-Language": "fr"})
    assert resp.status_code == 202
    assert resp.json()["message"].startswith("Si un compte correspond")
    second = smtp.wait_mail(address, count=2)
    assert second["Subject"].startswith("Bestätigen Sie Ihr Konto bei")
    assert "Hallo" in second.get_content()


# -- problems of find, the trashcan and API keys (marked texts) -----------------------
def speaks(user, locale: str) -> None:
    """Set the account's locale (a signed-in account's own wins over Accept-Language;
    one without a catalog, such as it_IT, leaves the choice to the request)."""
    own = user.api.get("/settings").json()["items"][0]
    assert user.api.patch(f"/settings/{own['id']}", json={"locale": locale}).status_code == 200


def test_a_bad_filter_in_find_is_answered_in_german_and_stays_english(user):
    speaks(user, "it_IT")
    german = user.api.get("/list", params={"filter": "{not json"},
                          headers={"Accept-Language": "de"})
    body = assert_problem(german, 400, "filter")
    assert german.headers["Content-Language"] == "de"
    assert body["title"] == "Ungültige Anfrage"
    assert body["detail"] == "filter: kein gültiges JSON"
    assert body["errors"] == {"filter": "kein gültiges JSON"}
    unknown = user.api.get("/list", params={"filter": '{"colour": 1}'},
                           headers={"Accept-Language": "de-AT"})
    assert assert_problem(unknown, 400, "filter")["detail"] == \
        "filter: unbekanntes Feld 'colour'"  # the parameter is filled in, not translated
    speaks(user, "en_US")
    english = user.api.get("/list", params={"filter": "{not json"},
                           headers={"Accept-Language": "de"})
    body = assert_problem(english, 400, "filter")
    assert english.headers["Content-Language"] == "en"
    assert (body["detail"], body["errors"]) == ("filter: not valid JSON",
                                               {"filter": "not valid JSON"})


def test_trashcan_and_api_key_problems_in_french(user):
    speaks(user, "it_IT")
    gone = user.api.get("/trashcan/list-x-notthere0000", headers={"Accept-Language": "fr"})
    body = assert_problem(gone, 404)
    assert body["title"] == "Introuvable"
    assert body["detail"] == "élément de corbeille list-x-notthere0000 introuvable"
    past = "2001-01-01T00:00:00Z"
    old = user.api.post("/apikey", json={"name": "old", "expires": past},
                        headers={"Accept-Language": "fr-FR"})
    body = assert_problem(old, 400, "expires")
    assert body["detail"] == "expires : doit être dans le futur"
    assert body["errors"] == {"expires": "doit être dans le futur"}
    speaks(user, "en_GB")
    english = user.api.post("/apikey", json={"name": "old", "expires": past},
                            headers={"Accept-Language": "fr"})
    assert assert_problem(english, 400, "expires")["detail"] == "expires: must be in the future"


def test_limits_in_spanish_keep_their_numbers(user, server):
    speaks(user, "es_MX")  # the account's own choice, no header
    limit = server.settings.per_page_max + 1
    resp = user.api.get("/trashcan", params={"limit": limit})
    body = assert_problem(resp, 400, "limit")
    assert resp.headers["Content-Language"] == "es"
    assert body["detail"] == f"limit: debe estar entre 1 y {limit - 1}"
