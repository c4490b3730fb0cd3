"""In a real chromium: the Translate button replaces a post's text in place, or says in place
why it could not (a LibreTranslate stand-in served by the test)."""

from pathlib import Path

import pytest

from tests.conftest import browser_login
from tests.test_pages_browser import AXE, axe_violations
from tests.test_translate import ENGLISH, SPANISH, add_detected_posts, choose_language

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"


@pytest.fixture
def app_config(translator):
    return {"TRANSLATE_URL": translator.url, "TRANSLATE_TIMEOUT": 0.5}


@pytest.fixture
def phone(browser, live_server, app, users):
    """Alice signed in on a 390 px wide phone, with bob's Spanish post on her /explore."""
    add_detected_posts(app, users["bob"], [SPANISH])
    context = browser.new_context(base_url=live_server, viewport={"width": 390, "height": 800})
    page = context.new_page()
    browser_login(page, live_server)
    page.goto("/explore")
    yield page
    context.close()


def test_translate_replaces_the_post_in_place(phone, translator):
    from playwright.sync_api import expect

    post = phone.locator(".post").first
    button = post.get_by_role("button", name="Translate")
    expect(post.locator(".post-body")).to_have_attribute("lang", "es")

    button.click()

    expect(post.locator(".post-body")).to_have_text(f"[en] {SPANISH}")
    expect(post.locator(".post-body")).to_have_attribute("lang", "en")
    expect(post.get_by_role("status")).to_have_text("Translated")
    expect(button).to_be_hidden()
    assert translator.requests == [{"q": SPANISH, "source": "es", "target": "en", "format": "text"}]
    # Nothing sticks out of a phone's screen.
    assert phone.evaluate("() => document.documentElement.scrollWidth") <= 390
    SCREENSHOTS.mkdir(exist_ok=True)
    phone.screenshot(path=SCREENSHOTS / "translate-phone.png", full_page=True)
    if AXE.exists():  # installed by `./run.sh test` (npm ci)
        assert axe_violations(phone) == []


def test_a_failing_service_is_said_in_place(phone, translator):
    from playwright.sync_api import expect

    translator.mode = "fail"
    post = phone.locator(".post").first

    post.get_by_role("button", name="Translate").click()

    expect(post.get_by_role("status")).to_have_text("Translation service unavailable.")
    expect(post.locator(".post-body")).to_have_text(SPANISH)
    expect(post.get_by_role("button", name="Translate")).to_be_enabled()  # may be tried again


def test_a_slow_service_is_said_in_place(phone, translator):
    from playwright.sync_api import expect

    translator.mode = "slow"
    post = phone.locator(".post").first

    post.get_by_role("button", name="Translate").click()

    expect(post.get_by_role("status")).to_contain_text("taking too long to answer")
    expect(post.locator(".post-body")).to_have_text(SPANISH)


def test_spanish_reader_gets_english_posts_translated_and_errors_in_spanish(
    browser, live_server, app, users, translator
):
    from playwright.sync_api import expect

    add_detected_posts(app, users["bob"], [ENGLISH])
    choose_language(app, users["alice"], "es")
    context = browser.new_context(base_url=live_server)
    page = context.new_page()
    browser_login(page, live_server)
    page.goto("/explore")
    post = page.locator(".post").first

    translator.mode = "fail"
    post.get_by_role("button", name="Traducir").click()
    expect(post.get_by_role("status")).to_have_text("Servicio de traducción no disponible.")

    translator.mode = "ok"
    post.get_by_role("button", name="Traducir").click()
    expect(post.locator(".post-body")).to_have_text(f"[es] {ENGLISH}")
    expect(post.get_by_role("status")).to_have_text("Traducido")
    context.close()
