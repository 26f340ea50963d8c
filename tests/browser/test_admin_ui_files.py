"""Files in the admin UI, in headless Chromium against a real `apicrud serve`: upload a
picture with the create form, see its preview (bytes fetched with the user's token), and
download it; the API is asked afterwards whether the UI did what it showed."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import expect, sync_playwright

from uihelp import CHROMIUM_ARGS, VIEWPORT, PageErrors, chromium_path, login, shot, start_service

expect.set_options(timeout=15_000)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    service = start_service(str(tmp_path_factory.mktemp("admin-ui-files")))
    yield service
    service.stop()


@pytest.fixture
def page(request):
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True,
                                     args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
        page = context.new_page()
        errors = PageErrors(page)
        failed_before = request.session.testsfailed
        try:
            yield page
        finally:
            if request.session.testsfailed > failed_before:
                shot(page, f"failed-{request.node.name}")
            browser.close()
        errors.assert_none()


def picture() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def test_upload_a_picture_see_its_preview_and_download_it(page, service, tmp_path):
    owner, stranger = service.add_user("files"), service.add_user("other")
    data = picture()
    path = tmp_path / "red.png"
    path.write_bytes(data)
    login(page, service.root, owner.username, owner.password)
    page.goto(service.root + "/admin/#/file")
    page.get_by_role("link", name="Create").click()
    page.locator("input[type=file]").set_input_files(str(path))
    expect(page.get_by_text("red.png")).to_be_visible()
    shot(page, "files-create")
    page.get_by_role("button", name="Save").click()
    preview = page.get_by_test_id("file-preview")
    expect(preview).to_be_visible()
    expect(preview).to_have_attribute("alt", "preview of red.png")
    assert page.evaluate("el => el.naturalWidth", preview.element_handle()) == 40
    assert preview.get_attribute("src").startswith("blob:")
    shot(page, "files-show")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download").click()
    download = info.value
    assert download.suggested_filename == "red.png"
    assert Path(download.path()).read_bytes() == data
    # the list shows the preview too
    page.goto(service.root + "/admin/#/file")
    expect(page.locator("table tbody tr")).to_have_count(1)
    expect(page.locator("table tbody tr").get_by_test_id("file-preview")).to_be_visible()
    shot(page, "files-list")
    # what the API says: one file of the owner's, the same bytes, no one else's to read
    files = owner.api.get("/file").json()["items"]
    assert [(f["name"], f["size"], f["content_type"], f["uid"]) for f in files] == \
        [("red.png", len(data), "image/png", owner.uid)]
    assert owner.api.get(f"/file/{files[0]['id']}/content").content == data
    assert stranger.api.get(f"/file/{files[0]['id']}/content").status_code == 404
