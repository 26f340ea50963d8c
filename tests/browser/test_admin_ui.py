"""The built-in admin UI at /admin/, in headless Chromium against the running service.

One owner with twelve lists (one of them public) and one user with no rights on them,
on a real `apicrud serve` of the module's own, which also signs people in through an
OpenID provider (tests/integration/oidc_provider.py, on loopback). Each test is one thing a
person does in the UI and leaves the lists as it found them; each step leaves a screenshot in
artifacts/screenshots/ (kept by CI). The API is asked afterwards whether the UI did what
it showed.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from helpers import ROOT
from uihelp import (
    CHROMIUM_ARGS,
    VIEWPORT,
    PageErrors,
    chromium_path,
    login,
    rows,
    shot,
    start_service,
)

sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from oidc_provider import Provider

CLIENT_ID = "admin-ui-test-client"
CLIENT_SECRET = "oidc-secret-" + secrets.token_hex(8)

expect.set_options(timeout=15_000)


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, request):
    """A fresh browser profile (no stored session) per test; a failed test leaves a
    screenshot of where it stopped."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    errors = PageErrors(page)
    failed_before = request.session.testsfailed
    yield page
    if request.session.testsfailed > failed_before:
        shot(page, f"failed-{request.node.name}")
    context.close()
    errors.assert_none()


@pytest.fixture(scope="module")
def op():
    """An OpenID provider with a login page of its own."""
    provider = Provider(CLIENT_ID, CLIENT_SECRET)
    yield provider
    provider.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory, op):
    """A real `apicrud serve` on the embedded defaults, in its own data folder, with the
    provider as "test"."""
    service = start_service(str(tmp_path_factory.mktemp("admin-ui")), config={
        "oidc_providers": {"test": {"issuer": op.url, "client_id": CLIENT_ID,
                                    "label": "Test provider"}},
        "oidc_client_secrets": {"test": CLIENT_SECRET}})
    op.client.redirect_uris.append(service.api_url + "/auth/oidc/test/callback")
    yield service
    service.stop()


@pytest.fixture(scope="module")
def world(service):
    """An owner with lists "list 00".."list 11" ("list 05" is public), and a bystander."""
    owner = service.add_user("owner")
    bystander = service.add_user("guest")
    ids = {}
    for i in range(12):
        name = f"list {i:02d}"
        resp = owner.api.post("/list", json={
            "name": name, "description": "odd" if i % 2 else "even",
            "privacy": "public" if i == 5 else "secret"})
        assert resp.status_code == 201, resp.text
        ids[name] = resp.json()["id"]
    return service.root, owner, bystander, ids


def _is_page(item: dict) -> bool:
    """Whether a path's GET answers a page of items (what the UI takes for a resource)."""
    ok = item.get("get", {}).get("responses", {}).get("200", {})
    schema = ok.get("content", {}).get("application/json", {}).get("schema", {})
    return "items" in schema.get("properties", {})


def _collections(spec: dict) -> dict[str, dict]:
    """Each collection the UI shows, with the schema of its items ($ref followed)."""
    out = {}
    for path, item in spec["paths"].items():
        if not (re.fullmatch(r"/[a-z][a-z0-9_]*", path) and _is_page(item)):
            continue
        ok = item["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        schema = ok["properties"]["items"].get("items", {})
        ref = schema.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
        out[path[1:]] = schema
    return out


def _menu_label(name: str, schema: dict) -> str:
    """The label the menu should show: the schema's title, else a plural of the name."""
    if schema.get("title"):
        return schema["title"]
    words = name.split("_")
    last = words[-1]
    if re.search(r"[^aeiou]y$", last):
        last = last[:-1] + "ies"
    elif not last.endswith("s"):
        last += "s"
    return " ".join(words[:-1] + [last]).capitalize()


def test_login_menu_from_spec_and_logout(page, world, service):
    root, owner, _, _ = world
    page.goto(root + "/admin/")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    shot(page, "01-login")
    page.locator("input[name=username]").fill(owner.username)
    page.locator("input[name=password]").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("invalid username or password")).to_be_visible()
    shot(page, "02-login-refused")

    login(page, root, owner.username, owner.password)
    # every collection the spec serves is a menu entry, with no UI code of its own,
    # labelled with its schema's title or a plural of its name
    spec = requests.get(service.api_url + "/openapi.json", timeout=30).json()
    collections = _collections(spec)
    assert "list" in collections and "trashcan" in collections
    menu = page.get_by_role("menu")
    special = {"trashcan": "Trashcan", "audit": "Audit trail"}
    for name, schema in collections.items():
        label = special.get(name) or _menu_label(name, schema)
        expect(menu.get_by_role("menuitem", name=label, exact=True)).to_be_visible()
    # titles from the schemas, plurals of the rest; never a raw resource name
    for label in ("API keys", "List members", "People", "Categories", "Lists", "Settings"):
        expect(menu.get_by_role("menuitem", name=label, exact=True)).to_be_visible()
    for raw in ("Apikey", "Listmember", "Person", "Category", "List", "Metric"):
        expect(menu.get_by_role("menuitem", name=raw, exact=True)).to_have_count(0)
    shot(page, "03-logged-in")

    token = page.evaluate("JSON.parse(localStorage.getItem('apicrud.session')).token")
    auth = {"Authorization": f"Bearer {token}"}
    assert requests.get(service.api_url + "/auth", headers=auth, timeout=30).status_code == 200
    page.get_by_role("button", name="Profile").click()
    page.get_by_role("menuitem", name="Logout").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    # logging out ended the session on the server, not only in the page
    assert requests.get(service.api_url + "/auth", headers=auth, timeout=30).status_code == 401
    shot(page, "04-logged-out")


def test_list_paging_and_sort(page, world):
    root, owner, _, _ = world
    login(page, root, owner.username, owner.password)
    page.goto(root + "/admin/#/list")
    expect(rows(page)).to_have_count(10)
    expect(page.get_by_text("1-10 of 12")).to_be_visible()
    shot(page, "05-list-page-1")

    page.get_by_role("button", name="Go to page 2").click()
    expect(rows(page)).to_have_count(2)
    expect(page.get_by_text("11-12 of 12")).to_be_visible()
    shot(page, "06-list-page-2")

    page.get_by_role("columnheader", name="Name").get_by_role("button").click()  # ascending
    expect(rows(page)).to_have_count(10)
    expect(rows(page).first).to_contain_text("list 00")
    expect(rows(page).nth(9)).to_contain_text("list 09")
    page.get_by_role("columnheader", name="Name").get_by_role("button").click()  # descending
    expect(rows(page).first).to_contain_text("list 11")
    expect(rows(page).nth(1)).to_contain_text("list 10")
    shot(page, "07-list-sorted-by-name-desc")


def test_filter(page, world):
    root, owner, _, _ = world
    login(page, root, owner.username, owner.password)
    page.goto(root + "/admin/#/list")
    expect(rows(page)).to_have_count(10)
    page.get_by_placeholder(re.compile("^Search")).fill("list 07")
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_contain_text("list 07")
    shot(page, "08-list-search")

    page.get_by_placeholder(re.compile("^Search")).fill("")
    expect(rows(page)).to_have_count(10)
    page.get_by_role("button", name="Add filter").click()
    page.get_by_role("menuitemcheckbox", name="Privacy").click()
    page.get_by_role("combobox", name="Privacy").click()
    page.get_by_role("option", name="public").click()
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_contain_text("list 05")
    shot(page, "09-list-filter-privacy")


def test_create(page, world):
    root, owner, _, _ = world
    login(page, root, owner.username, owner.password)
    page.goto(root + "/admin/#/list")
    page.get_by_role("link", name="Create").click()
    expect(page.locator("input[name=name]")).to_be_visible()
    # the form comes from the POST body schema: server-owned fields are not inputs
    expect(page.locator("input[name=created]")).to_have_count(0)
    expect(page.locator("input[name=uid]")).to_have_count(0)
    page.locator("input[name=name]").fill("made in the browser")
    page.locator("input[name=description]").fill("created through the admin UI")
    page.get_by_role("combobox", name="Privacy").click()
    page.get_by_role("option", name="public").click()
    shot(page, "10-create-form")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Element created")).to_be_visible()
    expect(page.get_by_text("made in the browser", exact=True)).to_be_visible()
    shot(page, "11-created")

    found = owner.api.get("/list", params={"filter": '{"name": "made in the browser"}'}).json()
    assert found["count"] == 1
    record = found["items"][0]
    assert record["description"] == "created through the admin UI"
    assert record["privacy"] == "public" and record["uid"] == owner.uid
    # leave the owner's lists as the other tests count them
    assert owner.api.delete(f"/list/{record['id']}").status_code == 200
    assert owner.api.delete(f"/trashcan/list-{record['id']}").status_code == 200


def test_edit_sends_the_whole_record(page, world):
    root, owner, _, ids = world
    login(page, root, owner.username, owner.password)
    page.goto(root + "/admin/#/list")
    puts = []
    page.on("request", lambda r: puts.append(r) if r.method == "PUT" else None)
    rows(page).get_by_text("list 03", exact=True).click()  # a row opens its edit form
    expect(page.locator("input[name=description]")).to_have_value("odd")
    page.locator("input[name=description]").fill("edited in the browser")
    shot(page, "12-edit-form")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Element updated")).to_be_visible()
    shot(page, "13-edited")

    assert len(puts) == 1
    assert puts[0].url.endswith(f"/api/v1/ra/list/{ids['list 03']}")
    sent = puts[0].post_data_json
    # react-admin sends back the record it read, read-only fields included
    assert {"id", "name", "created", "rbac", "uid", "status"} <= set(sent)
    assert sent["description"] == "edited in the browser"
    record = owner.api.get(f"/list/{ids['list 03']}").json()
    assert record["description"] == "edited in the browser" and record["name"] == "list 03"


def test_delete_to_trashcan_restore_and_purge(page, world):
    root, owner, _, ids = world
    login(page, root, owner.username, owner.password)
    page.goto(root + "/admin/#/list")
    row = rows(page).filter(has_text="list 04")
    row.get_by_role("button", name="Delete").click()
    shot(page, "14-delete-confirm")
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text("Element deleted")).to_be_visible()
    expect(rows(page).filter(has_text="list 04")).to_have_count(0)
    expect(page.get_by_text("1-10 of 11")).to_be_visible()  # gone from the count too
    assert owner.api.get(f"/list/{ids['list 04']}").status_code == 404
    shot(page, "15-deleted")

    page.get_by_role("menuitem", name="Trashcan").click()
    trashed = rows(page).filter(has_text="list 04")
    expect(trashed).to_have_count(1)
    expect(trashed).to_contain_text(ids["list 04"])
    shot(page, "16-trashcan")
    trashed.get_by_role("button", name="Restore").click()
    expect(page.get_by_text("Restored list list 04")).to_be_visible()
    expect(rows(page).filter(has_text="list 04")).to_have_count(0)
    shot(page, "17-restored")
    assert owner.api.get(f"/list/{ids['list 04']}").json()["status"] == "active"

    # purge: for good, after a confirmation
    doomed = owner.api.post("/list", json={"name": "short-lived"}).json()["id"]
    assert owner.api.delete(f"/list/{doomed}").status_code == 200
    page.reload()
    trashed = rows(page).filter(has_text="short-lived")
    trashed.get_by_role("button", name="Purge").click()
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text("Purged list short-lived")).to_be_visible()
    expect(rows(page).filter(has_text="short-lived")).to_have_count(0)
    shot(page, "18-purged")
    assert owner.api.get(f"/trashcan/list-{doomed}").status_code == 404


def test_no_rights_no_edit_or_delete_buttons(page, world):
    root, _owner, bystander, ids = world
    login(page, root, bystander.username, bystander.password)
    page.goto(root + "/admin/#/list")
    # the owner's public list is readable by every signed-in user; nothing else of theirs
    public = rows(page).filter(has_text="list 05")
    expect(public).to_have_count(1)
    expect(rows(page)).to_have_count(1)
    expect(public.get_by_role("link", name="Edit")).to_have_count(0)
    expect(public.get_by_role("button", name="Delete")).to_have_count(0)
    expect(public.get_by_role("checkbox")).to_be_disabled()
    # a user may still create lists of their own
    expect(page.get_by_role("link", name="Create")).to_be_visible()
    shot(page, "19-no-rights-list")

    public.get_by_text("list 05", exact=True).click()  # opens the read-only view
    expect(page).to_have_url(re.compile(rf"#/list/{ids['list 05']}/show$"))
    expect(page.get_by_text("public", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Edit")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)
    shot(page, "20-no-rights-show")


@pytest.mark.parametrize("who", ["admin", "owner"])
def test_every_resource_of_the_spec_renders(page, world, service, who):
    """Open each screen derived from the spec (and a create form): no errors from the
    API, and /auth/can-i asked only about model-backed resources, never answering 400."""
    root, owner = world[0], world[1]
    failures, asked = [], []

    def seen(response):
        if response.status >= 400:
            failures.append(f"{response.status} {response.url}")
        if "/auth/can-i?" in response.url:
            asked.append(parse_qs(urlsplit(response.url).query)["resource"][0])

    page.on("response", seen)
    if who == "admin":
        login(page, root, "admin", service.admin.password)
    else:
        login(page, root, owner.username, owner.password)
    spec = requests.get(service.api_url + "/openapi.json", timeout=30).json()
    collections = _collections(spec)
    for name in collections:
        page.goto(f"{root}/admin/#/{name}")
        expect(page.locator("table tbody tr").first.or_(
            page.get_by_text(re.compile("^No .* (yet|found)")))).to_be_visible()
        if name == "list":
            shot(page, f"21-{who}-lists")
    page.goto(f"{root}/admin/#/list/create")
    expect(page.locator("input[name=name]")).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert not failures, failures
    # the records of model-backed resources carry rbac letters (the spec says so): only
    # about those does the UI ask, and it did ask (the create buttons)
    model_backed = {name for name, schema in collections.items()
                    if "rbac" in schema.get("properties", {})}
    assert "metric" not in model_backed and "list" in model_backed
    assert "list" in asked
    assert set(asked) <= model_backed, sorted(set(asked) - model_backed)


def test_numbers_are_shown_without_separators(page, world, service):
    """A grant's value (a number, also accepted as text) reads 2024, not 2,024: in the
    grant list and its edit form (whose number input saves 12024), and in the owner's
    usage metric that shows it as a limit."""
    root, owner, _, _ = world
    resp = service.admin.api.post("/grant", json={"name": "messages_daily", "value": 2024,
                                                  "uid": owner.uid})
    assert resp.status_code == 201, resp.text
    grant = resp.json()
    try:
        login(page, root, "admin", service.admin.password)
        page.goto(root + "/admin/#/grant")
        row = rows(page).filter(has_text="messages_daily").filter(has_text=owner.username)
        expect(row).to_have_count(1)
        value = row.locator("td.column-value")
        expect(value).to_have_text("2024")
        expect(row).not_to_contain_text("2,024")
        shot(page, "22-grant-value")
        value.click()  # the admin may edit it: the row opens the form
        expect(page.locator("input[name=value]")).to_have_value("2024")
        page.locator("input[name=value]").fill("12024")  # a number input: sent as a number
        shot(page, "23-grant-edit")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_text("Element updated")).to_be_visible()
        expect(row.locator("td.column-value")).to_have_text("12024")
        assert service.admin.api.get(f"/grant/{grant['id']}").json()["value"] == "12024"

        page.get_by_role("button", name="Profile").click()
        page.get_by_role("menuitem", name="Logout").click()
        login(page, root, owner.username, owner.password)
        page.goto(root + "/admin/#/metric")
        row = rows(page).filter(has_text="messages_daily")
        expect(row).to_have_count(1)
        expect(row.locator("td.column-limit")).to_have_text("12024")
        expect(row).not_to_contain_text("12,024")
        shot(page, "24-metric-limit")
    finally:
        assert service.admin.api.delete(f"/grant/{grant['id']}").status_code in (200, 204)


def test_integer_fields_are_shown_without_separators(page, world, service):
    """A field declared `type: integer` (a year, say) reads 2024. The default application
    has none, so the page is given a spec whose grant value is one: the records, the
    server and the UI are otherwise the real ones."""
    root, owner, _, _ = world
    resp = service.admin.api.post("/grant", json={"name": "contacts", "value": 2024,
                                                  "uid": owner.uid})
    assert resp.status_code == 201, resp.text
    grant = resp.json()

    def integer_value(route):
        spec = route.fetch().json()
        spec["components"]["schemas"]["Grant"]["properties"]["value"] = {
            "type": "integer", "description": "the allowance"}
        route.fulfill(json=spec)

    try:
        page.route("**/api/v1/openapi.json", integer_value)
        login(page, root, "admin", service.admin.password)
        page.goto(root + "/admin/#/grant")
        row = rows(page).filter(has_text="contacts").filter(has_text=owner.username)
        expect(row.locator("td.column-value")).to_have_text("2024")
        expect(row).not_to_contain_text("2,024")
        shot(page, "25-integer-field")
    finally:
        assert service.admin.api.delete(f"/grant/{grant['id']}").status_code in (200, 204)


def test_metric_labels_are_shown(page, world, service):
    """Values of one metric differ by their labels: the list shows them, so no two rows
    read the same."""
    root = world[0]
    for _ in range(2):  # requests of two kinds at least, counted by resource and status
        assert requests.get(service.api_url + "/health", timeout=30).status_code == 200
    login(page, root, "admin", service.admin.password)
    page.goto(root + "/admin/#/metric?perPage=100")  # every value, whatever ran before
    expect(page.get_by_role("columnheader", name="Labels")).to_be_visible()
    http = rows(page).filter(has_text=re.compile(r"^http_requests"))
    expect(http.first).to_be_visible()
    expect(rows(page).filter(has_text="resource=health").first).to_be_visible()
    expect(rows(page).filter(has_text="method=GET").first).to_be_visible()
    texts = [t.strip() for t in rows(page).all_inner_texts()]
    assert len(texts) > 1 and len(set(texts)) == len(texts), texts
    shot(page, "26-metric-labels")


def test_favicon(page, world):
    """The page links an icon of the UI's own, served with it as an image."""
    root = world[0]
    page.goto(root + "/admin/")
    href = page.evaluate("document.querySelector('link[rel~=icon]').href")
    assert href.startswith(root + "/admin/"), href
    resp = page.request.get(href)
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("image/"), resp.headers
    assert b"<svg" in resp.body()
    page.set_content(f'<body style="margin:24px;background:#eee">'
                     f'<img id="icon" src="{href}" width="128" height="128">'
                     f'<img src="{href}" width="32" height="32"'
                     f' style="margin-left:24px"><img src="{href}" width="16" height="16"'
                     f' style="margin-left:24px"></body>')
    page.wait_for_function("document.getElementById('icon').complete"
                           " && document.getElementById('icon').naturalWidth > 0")
    shot(page, "27-favicon")


def _edit_description(page, root, record_id: str, text: str) -> None:
    page.goto(f"{root}/admin/#/list/{record_id}")
    page.locator("input[name=description]").fill(text)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Element updated")).to_be_visible()


def test_audit_page_shows_an_edit(page, world):
    """An edit made in the UI is on the audit page (who, action, record, changed
    fields), filtered by resource and action; its show view says old -> new."""
    root, owner, _, ids = world
    login(page, root, owner.username, owner.password)
    before = owner.api.get(f"/list/{ids['list 06']}").json()["description"]
    _edit_description(page, root, ids["list 06"], "audited in the browser")
    page.get_by_role("menuitem", name="Audit trail").click()
    expect(rows(page).first).to_be_visible()
    page.get_by_role("combobox", name="Action").click()
    page.get_by_role("option", name="update", exact=True).click()
    page.get_by_role("combobox", name="Resource").click()
    page.get_by_role("option", name="list", exact=True).click()
    expect(page.get_by_role("listbox")).to_have_count(0)  # the choices are gone
    expect(page).to_have_url(re.compile("%22resource%22%3A%22list%22"))  # both filters on
    page.wait_for_load_state("networkidle")
    entry = rows(page).filter(has_text=ids["list 06"])
    expect(entry).to_have_count(1)
    expect(entry).to_contain_text("update")
    expect(entry).to_contain_text(owner.username)
    expect(entry).to_contain_text("description")
    expect(rows(page).filter(has_text="create")).to_have_count(0)  # the filter holds
    shot(page, "28-audit-trail")
    entry.locator("td.column-created").click()
    expect(page).to_have_url(re.compile(r"#/audit/[^/]+/show$"))
    expect(page.locator(".audit-changes li[data-field=description]")).to_have_text(
        f"description: {before} → audited in the browser")
    shot(page, "29-audit-entry")


def test_history_tab_shows_the_diff(page, world):
    root, owner, _, ids = world
    login(page, root, owner.username, owner.password)
    record = ids["list 08"]
    before = owner.api.get(f"/list/{record}").json()["description"]
    _edit_description(page, root, record, "history in the browser")
    page.goto(f"{root}/admin/#/list/{record}/show")
    expect(page.get_by_text("history in the browser", exact=True)).to_be_visible()
    page.get_by_role("tab", name="History").click()
    history = page.locator(".history tbody tr")
    expect(history.first).to_contain_text("update")
    expect(history.first).to_contain_text(owner.username)
    expect(history.first.locator("li[data-field=description]")).to_have_text(
        f"description: {before} → history in the browser")
    expect(history.last).to_contain_text("create")  # newest first, back to its creation
    shot(page, "30-history-tab")


def test_a_plain_user_sees_no_entry_about_anothers_secret_list(page, world):
    root, owner, bystander, ids = world
    secret = ids["list 10"]
    resp = owner.api.put(f"/list/{secret}", json={"description": "not for guests"})
    assert resp.status_code == 200
    login(page, root, bystander.username, bystander.password)
    page.goto(root + "/admin/#/audit")
    expect(page.locator("table tbody tr").first.or_(
        page.get_by_text(re.compile("^No .* (yet|found)")))).to_be_visible()
    page.wait_for_load_state("networkidle")
    expect(rows(page).filter(has_text=secret)).to_have_count(0)
    expect(page.get_by_text("not for guests")).to_have_count(0)
    shot(page, "31-audit-as-guest")
    # the record's history is not theirs either: the page says so, nothing breaks
    page.goto(f"{root}/admin/#/audit?filter=" + f'{{"record_id":"{secret}"}}')
    expect(page.get_by_text(re.compile("^No .* (yet|found)"))).to_be_visible()
    # what the server answers them is what the page showed
    seen = bystander.api.get("/audit", params={"filter": f'{{"record_id": "{secret}"}}'}).json()
    assert seen["count"] == 0 and seen["items"] == []


def test_sign_in_through_the_provider(page, world, op, service):
    """The login page has a button per provider; it leads to the provider's own login
    page and back into the admin UI, signed in (the session cookie, then GET /auth)."""
    root = world[0]
    person = service.add_user("sso")
    password = secrets.token_urlsafe(12)
    op.accounts[person.username] = (password, {
        "sub": "sub-" + secrets.token_hex(6), "preferred_username": person.username,
        "email": f"{person.username}@example.com", "email_verified": True})
    page.goto(root + "/admin/")
    button = page.get_by_role("button", name="Continue with Test provider")
    expect(button).to_be_visible()
    shot(page, "32-login-with-provider")
    button.click()
    expect(page.get_by_role("heading", name="Test provider sign-in")).to_be_visible()
    assert page.url.startswith(op.url + "/authorize?")
    page.get_by_label("Username").fill(person.username)
    page.get_by_label("Password").fill(password)
    shot(page, "33-provider-login")
    page.get_by_role("button", name="Log in at the provider").click()
    expect(page.get_by_role("button", name="Profile")).to_contain_text(person.username)
    assert page.url.startswith(root + "/admin/"), page.url
    # signed in for real: the lists load, and a write (cookie + CSRF token) goes through
    page.goto(root + "/admin/#/list/create")
    page.locator("input[name=name]").fill("made after single sign-on")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Element created")).to_be_visible()
    shot(page, "34-signed-in-through-provider")
    made = person.api.get("/list", params={"filter": '{"name": "made after single sign-on"}'})
    assert made.json()["count"] == 1
    page.get_by_role("button", name="Profile").click()
    page.get_by_role("menuitem", name="Logout").click()
    expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()


def test_provider_sign_in_refuses_another_site_as_return_target(service):
    """An attacker's link that would send the browser elsewhere after signing in is
    refused before the provider is ever asked."""
    start = service.api_url + "/auth/oidc/test"
    for target in ("https://evil.example/admin/", "//evil.example/admin/",
                   "/\\evil.example/admin/", "evil.example"):
        resp = requests.get(start, params={"return_to": target}, allow_redirects=False,
                            timeout=30)
        assert resp.status_code == 400, (target, resp.status_code)
        assert "Location" not in resp.headers
    ok = requests.get(start, params={"return_to": "/admin/"}, allow_redirects=False, timeout=30)
    assert ok.status_code == 302 and ok.headers["Location"].startswith("http://127.0.0.1:")
