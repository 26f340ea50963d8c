"""A field of any resource holding a file's id, declared in its schema with
``contentMediaType`` (its allow list) and ``x-file-resource``: the file must be one the
caller may read (else 404 naming the field), uploaded, and of an accepted type (else
415 naming the field). Here a copy of the project's spec makes a message's ``subject``
such a field, on an instance of its own (same database)."""

from __future__ import annotations

import shutil

import pytest
import yaml

from helpers import Api, assert_problem, make_user, serve_app
from test_files import PNG


@pytest.fixture(scope="module")
def fields(settings, server, tmp_path_factory):
    spec = tmp_path_factory.mktemp("spec") / "openapi"
    shutil.copytree(settings.path("openapi_dir"), spec)
    path = spec / "message.schema.yaml"
    schema = yaml.safe_load(path.read_text())
    schema["properties"]["subject"] = {
        "type": ["string", "null"], "maxLength": 128,
        "contentMediaType": "image/png, image/jpeg", "x-file-resource": "file"}
    path.write_text(yaml.safe_dump(schema))
    s = settings.replace(openapi_dir=str(spec),
                         file_dir=str(tmp_path_factory.mktemp("files")))
    with serve_app(s) as srv:
        yield srv


def upload(client: Api, data: bytes, name: str, **form):
    resp = client.post("/file", data=form, files={"content": (name, data)})
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def test_a_file_field_takes_a_readable_file_of_an_accepted_type(fields, server):
    owner, stranger = make_user(server), make_user(server)
    client = Api(fields.url, owner.token)
    lid = client.post("/list", json={"name": "pics"}).json()["id"]
    picture = upload(client, PNG, "dot.png")
    text = upload(client, b"just words\n", "notes.txt")
    made = client.post("/message", json={"list_id": lid, "subject": picture})
    assert made.status_code == 201, made.text
    mid = made.json()["id"]
    body = assert_problem(client.post("/message", json={"list_id": lid, "subject": text}),
                          415, "subject")
    assert "text/plain" in body["errors"]["subject"]
    assert_problem(client.patch(f"/message/{mid}", json={"subject": text}), 415, "subject")
    assert client.get(f"/message/{mid}").json()["subject"] == picture
    # someone else's file, a file that is not there, a trashed one: 404 naming the field
    theirs = upload(Api(fields.url, stranger.token), PNG, "theirs.png")
    for value in (theirs, "x-nosuchfile"):
        assert_problem(client.post("/message", json={"list_id": lid, "subject": value}),
                       404, "subject")
    gone = upload(client, PNG, "gone.png")
    assert client.delete(f"/file/{gone}").status_code == 200
    assert_problem(client.patch(f"/message/{mid}", json={"subject": gone}), 404, "subject")
    # a direct upload not confirmed yet
    pending = client.post("/file/direct", json={"name": "later.png", "size": len(PNG)})
    assert pending.status_code == 201, pending.text
    assert_problem(client.post("/message", json={
        "list_id": lid, "subject": pending.json()["file"]["id"]}), 409, "subject")
    # null empties the field
    assert client.patch(f"/message/{mid}", json={"subject": None}).status_code == 200


@pytest.mark.parametrize("extra,problem", [
    ({}, "needs a foreign key to the files' table or x-file-resource"),
    ({"x-file-resource": "file", "x-content-types": "image/png"},
     "x-content-types must be a list"),
])
def test_a_file_field_declared_wrong_is_a_spec_problem(settings, extra, problem):
    import importlib

    from apicrud.crud.registry import ResourceSpec, bind_model

    models = importlib.import_module(settings.models_module)
    res = ResourceSpec(name="message", model=models.Message, controller_path=None)
    res.schema = {"properties": {"id": {"type": "string"}, "subject": {
        "type": ["string", "null"], "contentMediaType": "image/png", **extra}}}
    bind_model(res)
    assert any(problem in p and "subject" in p for p in res.problems), res.problems
