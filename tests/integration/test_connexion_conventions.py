"""connexion's spec conventions under ``apicrud serve`` (apicrud.connexion_conventions):
paths written for connexion (``x-openapi-router-controller``, dotted operationIds, an
operation without one resolved RestyResolver's way) and their handlers, authenticated by
``x-bearerInfoFunc`` and ``x-basicInfoFunc``, dropped into a project ``apicrud init``
made, then served by a real ``apicrud serve`` on loopback.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from helpers.project import free_port, run_cli, write_connexion_project

PETS_PATHS = """
collection:
  x-openapi-router-controller: handlers.pets
  get:
    operationId: search
    security: [{petauth: []}]
    parameters:
      - {name: limit, in: query, schema: {type: integer, minimum: 1, default: 10}}
      - {name: name-prefix, in: query, schema: {type: string}}
    responses:
      "200": {description: the pets, content: {application/json: {schema: {type: array}}}}
  post:
    operationId: post
    security: [{petauth: [pets.write]}, {petbasic: []}]
    requestBody:
      required: true
      x-body-name: pet
      content:
        application/json:
          schema:
            type: object
            required: [name]
            additionalProperties: false
            properties: {name: {type: string, maxLength: 20}}
    responses:
      "201": {description: created}
item:
  get:
    operationId: handlers.pets.get_pet
    security: [{petauth: []}]
    parameters:
      - {name: pet_id, in: path, required: true, schema: {type: string}}
    responses:
      "200": {description: the pet}
      "404": {description: no such pet}
stats:
  get:
    security: [{petauth: []}]
    responses:
      "200": {description: counts}
petname:
  get:
    operationId: handlers.pets.name_of
    security: [{petauth: []}]
    parameters:
      - {name: pet-id, in: path, required: true, schema: {type: string}}
    responses:
      "200": {description: the pet's name}
teapot:
  get:
    operationId: handlers.pets.teapot
    security: [{petauth: []}]
    responses:
      "418": {description: a teapot}
"""

HANDLERS = {
    "handlers/__init__.py": "",
    "handlers/pets.py": '''
        """Handlers as a connexion project writes them."""
        PETS = {}


        def search(limit, nameprefix=""):
            return [p for p in PETS.values() if p["name"].startswith(nameprefix)][:limit]


        def post(pet, user, token_info):
            pet_id = str(len(PETS) + 1)
            PETS[pet_id] = {"id": pet_id, "name": pet["name"], "owner": user}
            return PETS[pet_id], 201, {"Location": f"/api/v1/pets/{pet_id}"}


        def teapot():
            import connexion

            raise connexion.ProblemException(status=418, title="I'm a teapot",
                                             detail="short and stout")


        def name_of(petid):
            return {"name": PETS[petid]["name"]} if petid in PETS else ({}, 404)


        def get_pet(pet_id):
            if pet_id not in PETS:
                return {"detail": "no such pet"}, 404
            return PETS[pet_id]
        ''',
    "handlers/stats.py": '''
        from handlers.pets import PETS


        def search(**kwargs):
            return {"pets": len(PETS), "scope": kwargs["token_info"].get("scope")}
        ''',
    "handlers/auth.py": '''
        TOKENS = {"ada-token": {"sub": "ada", "scope": "pets.write"},
                  "cy-token": {"sub": "cy", "scope": "pets.read"}}


        def token_info(token, required_scopes):
            info = TOKENS.get(token)
            if info is None or not set(required_scopes or ()) <= {info["scope"]}:
                return None
            return info


        def basic_info(username, password):
            return {"sub": username} if password == "open-sesame" else None
        ''',
}


def _write_project(project) -> None:
    write_connexion_project(
        project, HANDLERS, "pets.path.yaml", PETS_PATHS,
        {"/pets": "collection", "/pets/{pet_id}": "item", "/pets/{pet-id}/name": "petname",
         "/stats": "stats", "/teapot": "teapot"},
        {"petauth": {"type": "http", "scheme": "bearer",
                     "x-bearerInfoFunc": "handlers.auth.token_info"},
         "petbasic": {"type": "http", "scheme": "basic",
                      "x-basicInfoFunc": "handlers.auth.basic_info"}},
        **{"x-apicrud-resolver": {"resty": "handlers"}})


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """(project folder, env) of a new project holding the connexion paths."""
    project = tmp_path_factory.mktemp("cxspec") / "shop"
    env = {k: v for k, v in os.environ.items() if not k.startswith("APICRUD_")
           and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(APICRUD_DATA_DIR=str(project.parent / "data"), APICRUD_WORKERS="1",
               APICRUD_HOST="127.0.0.1", APICRUD_ADMIN_PASSWORD="admin-pw-1234567",
               APICRUD_RATELIMIT_AUTH_FAILURES="1000000")
    made = run_cli("init", str(project), cwd=project.parent, env=env)
    assert made.returncode == 0, made.stderr
    _write_project(project)
    return project, env


@pytest.fixture(scope="module")
def base(project):
    folder, env = project
    port = free_port()
    env = {**env, "APICRUD_PORT": str(port)}
    with open(folder.parent / "serve.log", "wb") as log:  # the child keeps its own descriptor
        server = subprocess.Popen([sys.executable, "-m", "apicrud.cli", "serve"], cwd=folder,
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api/v1"
    try:
        for _ in range(300):
            assert server.poll() is None, (folder.parent / "serve.log").read_text()
            try:
                if requests.get(url + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet
                pass
            time.sleep(0.2)
        else:
            pytest.fail("apicrud serve did not answer /health")
        yield url
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


ADA = {"Authorization": "Bearer ada-token"}


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode())
            .decode()}


def problem(resp, status: int, field: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    body = resp.json()
    assert body["status"] == status and body["message"] == body["detail"]
    if field is not None:
        assert field in body["errors"], body
    return body


def test_check_accepts_the_connexion_paths(project):
    folder, env = project
    done = run_cli("check", cwd=folder, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")


def test_routes_names_the_connexion_handlers(project):
    folder, env = project
    done = run_cli("routes", cwd=folder, env=env)
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    pets = {(r[0], r[1].rsplit("/api/v1", 1)[-1]): r[2] for r in rows if "/pets" in r[1]}
    assert pets[("GET", "/pets/{pet_id}")] == "handlers.pets.get_pet", done.stdout
    assert pets[("POST", "/pets")] == "handlers.pets.post", done.stdout
    assert "(unresolved)" not in done.stdout, done.stdout


def test_check_names_a_handler_that_does_not_resolve(project, tmp_path):
    folder, env = project
    broken = folder.parent / "broken"
    subprocess.run(["cp", "-r", str(folder), str(broken)], check=True)
    paths = broken / "openapi" / "pets.path.yaml"
    paths.write_text(paths.read_text().replace("handlers.pets.get_pet", "handlers.pets.nope"))
    done = run_cli("check", cwd=broken, env=env)
    assert done.returncode == 1
    assert "GET /pets/{pet_id}: operationId 'handlers.pets.nope' resolves to nothing" \
        in done.stderr, done.stderr


def test_bearer_info_func_authenticates_the_handlers(base):
    problem(requests.get(base + "/pets", timeout=30), 401)
    problem(requests.get(base + "/pets", headers={"Authorization": "Bearer wrong"},
                         timeout=30), 401)
    made = requests.post(base + "/pets", json={"name": "rex"}, headers=ADA, timeout=30)
    assert made.status_code == 201, made.text
    assert made.json()["owner"] == "ada"  # `user` from the token info's sub
    assert made.headers["Location"] == f"/api/v1/pets/{made.json()['id']}"
    assert made.headers["X-Content-Type-Options"] == "nosniff" and made.headers["X-Request-ID"]
    listed = requests.get(base + "/pets", headers=ADA, timeout=30)
    assert listed.status_code == 200 and "rex" in [p["name"] for p in listed.json()]


def test_basic_info_func_and_scopes(base):
    made = requests.post(base + "/pets", json={"name": "tom"},
                         headers=basic("bea", "open-sesame"), timeout=30)
    assert made.status_code == 201 and made.json()["owner"] == "bea"
    problem(requests.post(base + "/pets", json={"name": "tom"},
                          headers=basic("bea", "wrong"), timeout=30), 401)
    problem(requests.post(base + "/pets", json={"name": "tom"},
                          headers={"Authorization": "Basic !!notbase64"}, timeout=30), 401)
    # required_scopes: petauth with [pets.write] for a create; cy's token reads only
    cy = {"Authorization": "Bearer cy-token"}
    assert requests.get(base + "/pets", headers=cy, timeout=30).status_code == 200
    problem(requests.post(base + "/pets", json={"name": "tom"}, headers=cy, timeout=30), 401)


def test_apicrud_validates_the_handlers_input(base):
    problem(requests.post(base + "/pets", json={"name": "x", "colour": "red"}, headers=ADA,
                          timeout=30), 400, "colour")
    problem(requests.get(base + "/pets", params={"limit": 0}, headers=ADA, timeout=30),
            400, "limit")
    problem(requests.get(base + "/pets", params={"kind": "cat"}, headers=ADA, timeout=30),
            400, "kind")
    # a query parameter's default is passed, as connexion passes it
    assert requests.get(base + "/pets", headers=ADA, timeout=30).status_code == 200


def test_dotted_operation_id_sanitized_parameter_and_tuple_replies(base):
    made = requests.post(base + "/pets", json={"name": "kit"}, headers=ADA, timeout=30)
    pet_id = made.json()["id"]
    # name-prefix arrives as nameprefix, as connexion's sanitized() names it
    found = requests.get(base + "/pets", params={"name-prefix": "ki"}, headers=ADA, timeout=30)
    assert [p["name"] for p in found.json()] == ["kit"]
    got = requests.get(f"{base}/pets/{pet_id}", headers=ADA, timeout=30)
    assert got.status_code == 200 and got.json()["name"] == "kit"
    missing = requests.get(f"{base}/pets/999", headers=ADA, timeout=30)
    assert missing.status_code == 404 and missing.json() == {"detail": "no such pet"}
    # a path parameter whose name is no identifier (pet-id): routed, passed as petid
    named = requests.get(f"{base}/pets/{pet_id}/name", headers=ADA, timeout=30)
    assert named.status_code == 200 and named.json() == {"name": "kit"}


def test_resty_resolver_and_token_info_through_kwargs(base):
    stats = requests.get(base + "/stats", headers=ADA, timeout=30)
    assert stats.status_code == 200, stats.text
    assert stats.json()["scope"] == "pets.write" and stats.json()["pets"] >= 1


def test_apicrud_credentials_are_not_the_handlers_and_its_resources_still_work(base):
    login = requests.post(base + "/auth", json={"username": "admin",
                                                "password": "admin-pw-1234567"}, timeout=30)
    assert login.status_code == 201, login.text
    session = {"Authorization": f"Bearer {login.json()['token']}"}
    # a session token is no token of petauth's
    problem(requests.get(base + "/pets", headers=session, timeout=30), 401)
    # and ada's token is none of apicrud's
    problem(requests.get(base + "/note", headers=ADA, timeout=30), 401)
    note = requests.post(base + "/note", json={"title": "beside the pets"}, headers=session,
                         timeout=30)
    assert note.status_code == 201, note.text


def test_a_connexion_problem_exception_keeps_its_status_in_apicrud_s_format(base):
    body = problem(requests.get(base + "/teapot", headers=ADA, timeout=30), 418)
    assert body["title"] == "I'm a teapot" and body["detail"] == "short and stout"
