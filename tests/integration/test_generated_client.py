"""A typed client generated from the served spec works against the service.

``openapi-python-client`` generates a Python package from ``/api/v1/openapi.json`` as a
client author would (once per session, into a temporary folder), every generated module
is imported, and a short scenario runs over HTTP through the generated functions and
models: log in, create a list, bulk-create messages, find with ``fields``, ``embed`` and
two sort keys, read one record and update it with ``If-Match``, then a 412 for a stale
ETag. The generated models parse every response strictly (required properties, enums,
date-times), so a spec that stops describing what the service sends, or that the
generator can no longer read, fails here.
"""

from __future__ import annotations

import importlib
import json
import logging
import pkgutil
import subprocess
import sys

import pytest
import requests

from helpers import make_user

PACKAGE = "apicrud_client"
# no post hooks: the default ones run ruff over the output (a tool, and not needed to
# import the package)
# the generator reads binary bodies only as application/octet-stream: a thumbnail
# (image/jpeg) and a download (*/*) are such bodies to it (content_type_overrides)
CONFIG = (f"post_hooks: []\nproject_name_override: {PACKAGE}\npackage_name_override: {PACKAGE}\n"
          "content_type_overrides:\n  image/jpeg: application/octet-stream\n"
          '  "*/*": application/octet-stream\n')


@pytest.fixture(scope="session")
def generated(server, tmp_path_factory):
    """The generated client package, imported (one generation per test session)."""
    folder = tmp_path_factory.mktemp("generated_client")
    resp = requests.get(server.url + "/openapi.json", timeout=30)
    assert resp.status_code == 200, resp.text
    spec = folder / "openapi.json"
    spec.write_bytes(resp.content)
    config = folder / "config.yaml"
    config.write_text(CONFIG)
    out = folder / PACKAGE
    run = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(spec),
         "--config", str(config), "--meta", "none", "--output-path", str(out),
         "--fail-on-warning"],
        check=False, capture_output=True, text=True, timeout=300, cwd=folder)
    output = (run.stdout + run.stderr).replace(str(out), "<out>")
    # the generator reports parts of the spec it could not read as warnings (and skips
    # them); --fail-on-warning turns them into a non-zero exit, and none is accepted
    assert run.returncode == 0, output
    assert "warning" not in output.lower() and "error" not in output.lower(), output
    sys.path.insert(0, str(folder))
    try:
        package = importlib.import_module(PACKAGE)
        # every generated module is valid Python and imports (not only those used below)
        modules = [m.name for m in pkgutil.walk_packages(package.__path__, PACKAGE + ".")]
        assert any(".api.message." in m for m in modules), modules
        for name in modules:
            importlib.import_module(name)
        yield package
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


@pytest.fixture(autouse=True)
def quiet_client_logs():
    """httpx and httpcore are this test's HTTP client, not the service: their records
    (httpcore's DEBUG ones show response headers, Set-Cookie included) must not end up
    in the service-log capture that test_no_secrets_in_logs scans."""
    loggers = [logging.getLogger(name) for name in ("httpx", "httpcore")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    yield
    for lg, level in zip(loggers, levels, strict=True):
        lg.setLevel(level)


def _op(tag: str, name: str):
    return importlib.import_module(f"{PACKAGE}.api.{tag}.{name}")


def _models():
    return importlib.import_module(PACKAGE + ".models")


def _signed_in(generated, server):
    """A user of the service and an AuthenticatedClient holding the token that the
    generated auth_login returned."""
    user = make_user(server)
    models = _models()
    anonymous = generated.Client(base_url=server.url, raise_on_unexpected_status=True,
                                 timeout=30)
    with anonymous as client:
        resp = _op("auth", "auth_login").sync_detailed(
            client=client, body=models.AuthLoginBody(username=user.username,
                                                     password=user.password))
    assert resp.status_code == 201, resp.content
    login = resp.parsed
    assert isinstance(login, models.AuthLoginResponse201), login
    assert login.uid == user.uid and login.account_id == user.account_id
    assert login.token and isinstance(login.expires, int)
    api = generated.AuthenticatedClient(base_url=server.url, token=login.token,
                                        raise_on_unexpected_status=True, timeout=30)
    return user, api


def test_generated_client_scenario(generated, server):
    models = _models()
    user, api = _signed_in(generated, server)
    with api as client:
        me = _op("auth", "auth_get").sync(client=client)
        assert isinstance(me, models.AuthGetResponse200) and me.uid == user.uid

        # a list: one record in, the typed record out (201's oneOf: Batch | List); the
        # create body is its own model, which requires what a create must give
        with pytest.raises(TypeError):
            models.ListCreateBodyType0(description="no name")  # type: ignore[call-arg]
        created = _op("list_", "list_create").sync(
            client=client, body=models.ListCreateBodyType0(name="generated",
                                                           description="from the spec"))
        assert isinstance(created, models.List), created
        assert created.id and created.uid == user.uid and created.rbac
        assert created.privacy == models.Privacy.SECRET
        assert created.created.tzinfo is not None
        list_id = created.id

        # bulk create: a JSON array of typed records in, a Batch out
        subjects = ["beta", "alpha", "gamma", "beta", "delta"]
        resp = _op("message", "message_create").sync_detailed(
            client=client, body=[models.MessageCreateBodyType1Item(list_id=list_id, subject=s,
                                                                   content=f"#{i}")
                                 for i, s in enumerate(subjects)])
        assert resp.status_code == 201, resp.content
        batch = resp.parsed
        assert isinstance(batch, models.Batch), batch
        assert batch.count == len(subjects) == len(batch.items)
        # Batch items are declared as plain objects: each is a whole Message
        written = [models.Message.from_dict(item.to_dict()) for item in batch.items]
        assert [m.subject for m in written] == subjects
        assert all(m.list_id == list_id and m.uid == user.uid and m.id for m in written)

        # find: two sort keys (ties by id), a field selection and the list embedded
        resp = _op("message", "message_find").sync_detailed(
            client=client, filter_=json.dumps({"list_id": list_id}),
            sort="subject:desc,created:asc", fields="list_id,subject", embed="list",
            limit=10)
        assert resp.status_code == 200, resp.content
        page = resp.parsed
        assert isinstance(page, models.MessageFindResponse200), page
        assert page.count == len(subjects) and resp.headers["X-Total-Count"] == "5"
        by_created = sorted(written, key=lambda m: (m.created, m.id))
        expected = sorted(by_created, key=lambda m: m.subject, reverse=True)
        assert [m.id for m in page.items] == [m.id for m in expected]
        for item in page.items:
            assert item.subject and item.list_id == list_id
            # only the selected fields (and id, and the embed) came back
            assert item.content is generated.types.UNSET
            assert item.rbac is generated.types.UNSET
            assert isinstance(item.list_, models.MessageListType0), item.list_
            embedded = item.list_.to_dict()
            assert embedded["id"] == list_id and embedded["name"] == "generated"

        # one record, its ETag, and an update that names it
        target = expected[0]
        resp = _op("message", "message_get").sync_detailed(client=client, id=target.id)
        assert resp.status_code == 200, resp.content
        message = resp.parsed
        assert isinstance(message, models.Message) and message.id == target.id
        assert message.privacy == models.Privacy.MEMBER
        assert message.status == models.MessageStatus.ACTIVE
        etag = resp.headers["ETag"]
        assert etag

        patch = _op("message", "message_patch")
        # the generated body model requires list_id (Message's required: [list_id]);
        # sending the message's own list_id is no change
        resp = patch.sync_detailed(
            client=client, id=target.id, if_match=etag,
            body=models.Message(list_id=list_id, subject="edited"))
        assert resp.status_code == 200, resp.content
        updated = resp.parsed
        assert isinstance(updated, models.Message), updated
        assert updated.subject == "edited" and updated.content == message.content
        assert updated.modified is not None
        fresh = _op("message", "message_get").sync_detailed(client=client, id=target.id)
        assert fresh.headers["ETag"] != etag

        # the version read before the update is stale now: 412, a typed Problem
        resp = patch.sync_detailed(
            client=client, id=target.id, if_match=etag,
            body=models.Message(list_id=list_id, subject="lost update"))
        assert resp.status_code == 412, resp.content
        assert resp.headers["Content-Type"].startswith("application/problem+json")
        problem = resp.parsed
        assert isinstance(problem, models.Problem), problem
        assert problem.status == 412 and problem.title and problem.detail
        again = _op("message", "message_get").sync(client=client, id=target.id)
        assert isinstance(again, models.Message) and again.subject == "edited"



def _one_message(client):
    models = _models()
    lst = _op("list_", "list_create").sync(client=client, body=models.ListCreateBodyType0(name="f"))
    made = _op("message", "message_create").sync(
        client=client, body=models.MessageCreateBodyType0(list_id=lst.id, subject="s"))
    assert isinstance(made, models.Message), made
    return lst, made


# Read and update schemas require nothing (a fields= selection leaves fields out, updates
# are partial); what a create must give is the create body's own `required`
# (message.path.yaml: allOf [Message, {required: [list_id]}]).
def test_field_selection_responses_fit_the_generated_models(generated, server):
    models = _models()
    _, api = _signed_in(generated, server)
    with api as client:
        lst, made = _one_message(client)
        resp = _op("message", "message_get").sync_detailed(client=client, id=made.id,
                                                           fields="rbac")
        assert resp.status_code == 200 and resp.parsed.rbac
        page = _op("message", "message_find").sync(
            client=client, filter_=json.dumps({"list_id": lst.id}), fields="subject")
        assert isinstance(page, models.MessageFindResponse200)
        assert [m.subject for m in page.items] == ["s"]


def test_partial_update_body_fits_the_generated_models(generated, server):
    models = _models()
    _, api = _signed_in(generated, server)
    with api as client:
        _, made = _one_message(client)
        body = models.Message(subject="partial")  # a partial update: no list_id
        updated = _op("message", "message_patch").sync(client=client, id=made.id, body=body)
        assert isinstance(updated, models.Message) and updated.subject == "partial"
