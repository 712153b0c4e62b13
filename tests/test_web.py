"""End-to-end: the web page in headless Chromium enrols people, identifies a photo, runs a roll-call, checks masks."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
KEY = "ocf_web-test-key"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def web_gallery(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("web") / "g.sqlite3"


@pytest.fixture(scope="module")
def server(web_gallery):
    import uvicorn

    from occluface.api.app import ApiSettings, create_app
    from occluface.api.keys import KeyStore

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = ApiSettings(gallery=web_gallery, keys=KeyStore.load(None, [KEY]))
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def use_key(page, key: str) -> None:
    page.fill("#api-key", key)
    page.click("#key-use")
    page.wait_for_function("document.querySelector('#key-state').textContent.startsWith('key in use')")


def test_page_enrols_identifies_and_runs_rollcall(server, tmp_path):
    assert CHROMIUM, "Debian's chromium is needed for the web test (make test installs it: apt-get install chromium)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Playwright gives every launch a fresh, empty profile of its own.
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.goto(server + "/")
        assert "occluface" in page.title()

        page.click("nav button[data-tab=enroll]")
        page.fill("#enroll-name", "Obama")
        page.set_input_files("#enroll-files", str(SAMPLES / "fr_obama.jpg"))
        page.click("#enroll-submit")  # no key yet
        page.wait_for_selector("#enroll-status.error", timeout=60_000)
        assert "enter an API key" in page.inner_text("#enroll-status")
        use_key(page, "wrong-key")
        page.click("#enroll-submit")
        page.wait_for_function("document.querySelector('#enroll-status').textContent.includes('wrong API key')",
                               timeout=60_000)
        use_key(page, KEY)
        assert page.input_value("#api-key") == ""  # the field is cleared; the key lives in this tab's session
        assert page.evaluate("sessionStorage.getItem('occluface-api-key')") == KEY
        page.click("#enroll-submit")
        page.wait_for_function("document.querySelector('#enroll-status').textContent.startsWith('Enrolled')",
                               timeout=120_000)
        page.wait_for_selector("#subjects tbody tr", timeout=60_000)
        assert page.inner_text("#subjects tbody").startswith("Obama")
        page.fill("#enroll-name", "Biden")
        page.set_input_files("#enroll-files", str(SAMPLES / "fr_biden.jpg"))
        page.click("#enroll-submit")
        page.wait_for_function("document.querySelectorAll('#subjects tbody tr').length == 2", timeout=120_000)

        page.click("nav button[data-tab=identify]")
        page.set_input_files("#identify-file", str(SAMPLES / "fr_two_people_obama_biden.jpg"))
        page.wait_for_function("document.querySelectorAll('#identify-results tbody tr').length == 2",
                               timeout=120_000)
        names = sorted(page.locator("#identify-results tbody tr td:nth-child(2)").all_inner_texts())
        assert names == ["Biden", "Obama"]
        masks = page.locator("#identify-results tbody tr td:nth-child(4)").all_inner_texts()
        assert all(m.startswith("unmasked") for m in masks)
        canvas_w = page.evaluate("document.querySelector('#identify-canvas').width")
        assert canvas_w > 100  # the photo was drawn with its boxes

        page.click("nav button[data-tab=rollcall]")
        page.set_input_files("#rollcall-file", str(SAMPLES / "fr_two_people_obama_biden.jpg"))
        page.wait_for_function(
            "document.querySelector('#rollcall-present') || "
            "document.querySelector('#rollcall-status').classList.contains('error')", timeout=120_000)
        assert page.locator("#rollcall-status.error").count() == 0, page.inner_text("#rollcall-status")
        present = page.inner_text("#rollcall-present")
        assert "Obama" in present and "Biden" in present

        page.click("nav button[data-tab=maskcheck]")
        masked = sorted((SAMPLES.parent / "real_masked").glob("*.jpg"))[0]
        page.set_input_files("#maskcheck-file", str(masked))
        page.wait_for_selector("#maskcheck-results tbody tr", timeout=120_000)
        assert page.inner_text("#maskcheck-results tbody tr td:nth-child(2)") == "masked"
        page.wait_for_function("document.querySelector('#maskcheck-cam').naturalWidth > 0", timeout=30_000)
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        browser.close()


def test_page_follows_checkins_live(server, web_gallery):
    """A camera's watcher stores a check-in (here: written straight into the gallery, as `occluface watch` in
    another process does); the page that follows them shows it without a reload."""
    assert CHROMIUM, "Debian's chromium is needed for the web test"
    from playwright.sync_api import sync_playwright

    from occluface.gallery import open_gallery

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.goto(server + "/")
        page.click("nav button[data-tab=checkins]")
        use_key(page, "wrong-key")
        page.click("#checkins-follow")
        page.wait_for_selector("#checkins-status.error", timeout=60_000)
        assert "wrong API key" in page.inner_text("#checkins-status")
        use_key(page, KEY)
        page.click("#checkins-follow")
        page.wait_for_function("document.querySelector('#checkins-status').textContent.startsWith('following')",
                               timeout=60_000)
        with open_gallery(web_gallery) as g:
            g.add_checkin(time="2026-12-07T06:01:02.000+00:00", camera="lamp-room", name="Obama", similarity=0.71,
                          mask="masked", frames=12, first_seen="2026-12-07T06:01:00.500+00:00")
            g.add_checkin(time="2026-12-07T06:01:09.000+00:00", camera="lamp-room", name=None, similarity=0.31,
                          mask="unmasked", frames=8, first_seen="2026-12-07T06:01:07.000+00:00")
        page.wait_for_function("document.querySelectorAll('#checkins-table tbody tr').length == 2", timeout=30_000)
        rows = page.locator("#checkins-table tbody tr").all_inner_texts()
        assert "unknown person" in rows[0] and "Obama" in rows[1] and "lamp-room" in rows[1] and "masked" in rows[1]
        browser.close()


#: Names the page's check (static/app.js checkName) and the server's rule (gallery.store.validate_name) must judge
#: alike: plain, accented, non-Latin, decomposed accents, padding, empty, too long, and each kind of unprintable.
NAMES = ["Obama", "José María Aznar", "李小龙", "Zoë", "Ame\u0301lie", "  Kit Harington  ", "", "   ", "x" * 128,
         "x" * 129, "é" * 128, "tab\there", "line\nbreak", "nul\x00", "rtl\u202emark", "zero\u200bwidth",
         "nbsp\u00a0name", "em\u2003space", "line\u2028sep", "private\ue000use", "unassigned\u0378x", "emoji 🙂"]


def test_page_checks_names_with_the_servers_rule(server):
    """The page refuses a name before sending it exactly where the server would, and sends the same cleaned name."""
    assert CHROMIUM, "Debian's chromium is needed for the web test"
    from playwright.sync_api import sync_playwright

    from occluface.gallery.store import GalleryError, validate_name

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.goto(server + "/")
        verdicts = page.evaluate("(names) => names.map((n) => checkName(n))", NAMES)
        browser.close()
    for name, verdict in zip(NAMES, verdicts):
        try:
            expected = validate_name(name)
        except GalleryError:
            assert "error" in verdict, f"the page accepts {name!r}, the server refuses it"
        else:
            assert verdict.get("name") == expected, f"{name!r}: page {verdict}, server {expected!r}"
