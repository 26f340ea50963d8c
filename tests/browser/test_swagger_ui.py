"""The Swagger UI at /api/v1/ui/, in headless Chromium against the running service.

A real `apicrud serve` of the module's own (as in test_admin_ui.py), one user with a list
of their own and the admin with one of theirs. The page must render the served OpenAPI 3.1
document (swagger-ui 5; 4.x said "Unable to render this definition"), under a strict
Content-Security-Policy that the page never violates, and must execute a call with a
Bearer token from POST /auth entered in "Authorize". Screenshots go to
artifacts/screenshots/ (kept by CI).
"""

from __future__ import annotations

import json
import os
import re

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from uihelp import (
    CHROMIUM_ARGS,
    SCREENSHOTS,
    VIEWPORT,
    PageErrors,
    chromium_path,
    shot,
    start_service,
)

expect.set_options(timeout=15_000)

# Recorded in the page before any of its scripts runs: every CSP violation it reports.
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


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


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    service = start_service(str(tmp_path_factory.mktemp("swagger-ui")))
    yield service
    service.stop()


@pytest.fixture(scope="module")
def world(service):
    """A user owning the list "mine via swagger"; the admin owning "not theirs"."""
    user = service.add_user("swag")
    mine = user.api.post("/list", json={"name": "mine via swagger"})
    assert mine.status_code == 201, mine.text
    theirs = service.admin.api.post("/list", json={"name": "not theirs"})
    assert theirs.status_code == 201, theirs.text
    return user, mine.json()["id"]


class Console:
    """The page's console errors and CSP violations; a test ends asserting none."""

    def __init__(self, page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda msg: self.errors.append(msg.text)
                if msg.type == "error" else None)

    def csp_violations(self) -> list[str]:
        reported = self.page.evaluate("window.__cspViolations")
        return reported + [e for e in self.errors if "Content Security Policy" in e]

    def assert_clean(self) -> None:
        assert not self.csp_violations(), self.csp_violations()
        assert not self.errors, f"console errors: {self.errors}"


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(RECORD_CSP_VIOLATIONS)
    page = context.new_page()
    errors = PageErrors(page)
    failed_before = request.session.testsfailed
    yield page
    if request.session.testsfailed > failed_before:
        shot(page, f"failed-{request.node.name}")
    context.close()
    errors.assert_none()


@pytest.fixture
def console(page):
    return Console(page)


def shot_of(locator, name: str) -> None:
    """A screenshot of one element (the full-page shots of this long page are tall)."""
    os.makedirs(SCREENSHOTS, exist_ok=True)
    locator.screenshot(path=os.path.join(SCREENSHOTS, name + ".png"))


def _operation(page, method: str, path: str):
    """The block of one operation, e.g. GET /list (not /list/{id})."""
    return page.locator(f".opblock.opblock-{method}").filter(
        has=page.locator(f'.opblock-summary-path[data-path="{path}"]'))


def test_ui_lists_the_operations_of_the_served_spec(page, console, service):
    spec = requests.get(service.api_url + "/openapi.json", timeout=30).json()
    assert spec["openapi"].startswith("3.1")
    resp = page.goto(service.api_url + "/ui/")
    assert resp.status == 200
    csp = resp.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert resp.headers["x-content-type-options"] == "nosniff"

    expect(page.locator(".information-container .title")).to_contain_text(spec["info"]["title"])
    expect(page.locator(".info .title")).to_contain_text("OAS 3.1")  # read as 3.1
    # every operation of the spec is listed, under its path and summary
    blocks = page.locator(".opblock")
    count = sum(1 for item in spec["paths"].values() for method in item
                if method in ("get", "put", "post", "patch", "delete"))
    expect(blocks).to_have_count(count)
    find = spec["paths"]["/list"]["get"]
    expect(_operation(page, "get", "/list").locator(".opblock-summary-description")) \
        .to_have_text(find["summary"])
    expect(_operation(page, "post", "/auth")).to_have_count(1)
    expect(page.get_by_text("Unable to render")).to_have_count(0)
    expect(page.locator(".errors-wrapper")).to_have_count(0)
    # the bundle's styles applied (the stylesheet was not blocked)
    assert page.locator(".opblock-summary-method").first.evaluate(
        "e => getComputedStyle(e).color") == "rgb(255, 255, 255)"
    # the schemas render as JSON Schema 2020-12 (3.1's dialect): open List, see its fields
    model = page.locator("section.models article[data-json-schema-level='0']").filter(
        has=page.get_by_text("List", exact=True))
    model.locator(".json-schema-2020-12-accordion").first.click()
    for field in spec["components"]["schemas"]["List"]["properties"]:
        expect(model.locator(".json-schema-2020-12-property").filter(
            has=page.get_by_text(field, exact=True)).first).to_be_visible()
    shot_of(model, "swagger-01-schema-list")
    shot(page, "swagger-01-operations")
    page.screenshot(path=os.path.join(SCREENSHOTS, "swagger-01-operations-top.png"))
    console.assert_clean()


def test_authorize_with_bearer_token_and_try_it_out(page, console, service, world):
    user, list_id = world
    # a fresh session token from POST /auth, as a reader of the README's tour gets one
    login = requests.post(service.api_url + "/auth", timeout=30,
                          json={"username": user.username, "password": user.password})
    assert login.status_code == 201, login.text
    token = login.json()["token"]

    page.goto(service.api_url + "/ui/")
    expect(_operation(page, "get", "/list")).to_have_count(1)
    page.locator(".auth-wrapper").get_by_role("button", name="Authorize").click()
    dialog = page.locator(".dialog-ux .modal-ux")
    bearer = dialog.locator(".auth-container").filter(
        has=page.locator("h4", has_text=re.compile(r"^bearer")))
    expect(bearer).to_contain_text("session token from POST /auth")
    bearer.locator("input").fill(token)
    bearer.get_by_role("button", name="Apply credentials").click()  # labelled "Authorize"
    expect(bearer.get_by_role("button", name="Remove authorization")).to_have_text("Logout")
    expect(bearer).to_contain_text("Authorized")
    shot_of(bearer, "swagger-02-authorized-bearer")
    dialog.get_by_role("button", name="Close").first.click()
    expect(dialog).to_have_count(0)

    block = _operation(page, "get", "/list")
    block.locator(".opblock-summary-control").click()
    block.get_by_role("button", name="Try it out").click()
    with page.expect_response(lambda r: r.url.split("?")[0] == service.api_url + "/list"
                              and r.request.method == "GET") as answer:
        block.get_by_role("button", name="Execute").click()
    sent = answer.value
    assert sent.request.headers["authorization"] == f"Bearer {token}"
    assert sent.status == 200
    body = sent.json()
    assert body["count"] == 1 and [i["id"] for i in body["items"]] == [list_id]

    # what the page shows: status 200 and the caller's list, nobody else's
    live = block.locator(".live-responses-table")
    expect(live.locator("tr.response .response-col_status")).to_have_text("200")
    shown = live.locator("tr.response .response-col_description .highlight-code").first
    expect(shown).to_contain_text("mine via swagger")
    expect(shown).not_to_contain_text("not theirs")
    assert json.loads(shown.locator("pre").inner_text())["items"][0]["id"] == list_id
    expect(block.locator(".curl-command")).to_contain_text(f"Authorization: Bearer {token}")
    shot(page, "swagger-03-try-it-out")
    shot_of(block, "swagger-03-try-it-out-200")
    console.assert_clean()


def test_without_authorize_the_call_is_401(page, console, service):
    # a document named in the query string is ignored (queryConfigEnabled: false)
    other = []
    page.on("request", lambda r: other.append(r.url)
            if not r.url.startswith(service.root) and not r.url.startswith("data:") else None)
    page.goto(service.api_url + "/ui/?url=https://example.invalid/evil.json"
              "&configUrl=https://example.invalid/config.json")
    spec = requests.get(service.api_url + "/openapi.json", timeout=30).json()
    expect(page.locator(".information-container .title")).to_contain_text(spec["info"]["title"])
    block = _operation(page, "get", "/list")
    block.locator(".opblock-summary-control").click()
    block.get_by_role("button", name="Try it out").click()
    with page.expect_response(lambda r: r.url.split("?")[0] == service.api_url + "/list"):
        block.get_by_role("button", name="Execute").click()
    status = block.locator(".live-responses-table tr.response .response-col_status")
    expect(status).to_have_text("401")
    # a 401 is an answer the page shows, not a console error of the page itself
    console.errors = [e for e in console.errors if "401" not in e]
    console.assert_clean()
    assert not other, f"requests to other origins: {other}"
