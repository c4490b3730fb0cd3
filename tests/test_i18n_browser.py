"""A Spanish browser (chromium with locale es-ES) sees no English word on the main pages: not
in the navigation, the forms, their errors, the flashes, nor what the page script writes."""

import re

import pytest
from babel.messages.pofile import read_po

from tests.conftest import browser_login
from tests.helpers import add_posts, follow
from tests.test_i18n import SPANISH_PO

pytestmark = pytest.mark.browser

# Words that are the same in both languages, or names.
SAME_IN_BOTH = {"microblog", "api", "readme", "email", "alice", "bob", "carol", "code"}


def english_words() -> set[str]:
    """Every word of three letters or more in the English messages, less those the Spanish
    translations use too ("no", "a", "API")."""
    with open(SPANISH_PO, "rb") as f:
        catalogue = read_po(f)

    def words(texts) -> set[str]:
        found = set()
        for text in texts:
            text = re.sub(r"%\(\w+\)[sd]|<[^>]+>", " ", text)
            # Identifiers ('current_password') are code, the same in every language.
            found |= {w.lower() for w in re.findall(r"[A-Za-z_]{3,}", text) if "_" not in w}
        return found

    english, spanish = set(), set()
    for message in catalogue:
        if message.id:
            ids = message.id if isinstance(message.id, tuple) else (message.id,)
            strings = message.string if isinstance(message.string, tuple) else (message.string,)
            english |= words(ids)
            spanish |= words(strings)
    return english - spanish - SAME_IN_BOTH


def english_left(page, words: set[str]) -> set[str]:
    text = page.evaluate(
        """() => document.body.innerText + " " + [...document.querySelectorAll(
             "[placeholder], [aria-label], [title]")].map(e =>
             [e.getAttribute("placeholder"), e.getAttribute("aria-label")].join(" ")).join(" ")
             + " " + document.title"""
    )
    return {w for w in re.findall(r"[A-Za-z]{3,}", text) if w.lower() in words}


@pytest.fixture
def spanish_page(browser):
    context = browser.new_context(locale="es-ES", extra_http_headers={})
    page = context.new_page()
    yield page
    context.close()


def test_main_pages_in_spanish_have_no_english_left(app, users, live_server, spanish_page):
    add_posts(app, users["bob"], ["hola a todos"])
    follow(app, users["alice"], users["bob"])
    words = english_words()
    assert {"password", "follow", "settings", "explore"} <= words
    page = spanish_page

    def check(path):
        page.goto(live_server + path)
        assert page.evaluate("document.documentElement.lang") == "es", path
        assert english_left(page, words) == set(), path

    for path in ("/login", "/register", "/reset_password_request"):
        check(path)
    # A refused form: WTForms' own messages are in Spanish too.
    page.goto(live_server + "/login")
    page.click("button[type=submit]")
    assert "Este campo es obligatorio." in page.inner_text("main")
    assert english_left(page, words) == set()

    browser_login(page, live_server)
    for path in (
        "/index",
        "/explore",
        "/user/alice",
        "/user/bob",
        "/user/bob/followers",
        "/settings",
        "/edit_profile",
        "/messages",
        "/messages/sent",
        "/send_message/bob",
        "/search?q=hola",
        "/tasks",
        "/import",
    ):
        check(path)

    # A flash, and the character counter the page script writes.
    page.goto(live_server + "/index")
    page.fill("textarea[name=post]", "x" * 150)
    counter = page.inner_text(".char-count")
    assert "10 caracteres de más (como máximo 140)" == counter
    page.fill("textarea[name=post]", "¡Hola!")
    assert page.inner_text(".char-count") == "Quedan 134 de 140 caracteres"
    page.click("form:has(textarea[name=post]) button[type=submit]")
    page.wait_for_selector(".alert-success")
    assert "¡Su publicación ya está publicada!" in page.inner_text(".alert-success")
    # Relative dates follow the page's language.
    assert "hace" in page.inner_text(".post .relative-time") or "ahora" in page.inner_text(
        ".post .relative-time"
    )
    assert english_left(page, words) == set()
