"""Every page in a real chromium, filled with hostile content: it fits a phone and a laptop
screen, and axe-core finds nothing serious on it.

Screenshots of every page at both widths go to tests/screenshots/ (git-ignored), to be
looked at by a person: a test can say that nothing is wider than the screen, not that the
page looks right.
"""

import datetime
import re
import urllib.parse
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

import actors
from database import db
from jobs import Task, TaskStatus
from models import POST_MAX, Message, Post, User, text_length
from oauth_store import NAME_MAX, OAuthApp, OAuthToken
from tests.conftest import browser_login
from tests.helpers import ACUTE, EMOJI, actor_document, add_posts, at_the_limit, follow

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
AXE = Path(__file__).resolve().parent.parent / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = {"phone": (390, 844), "laptop": (1280, 800)}

LONG_NAME = "L" * 64  # the longest username there can be
LONG_WORD = "W" * 140  # the longest post there can be, as one word
LONG_URL = "https://example.com/" + "a" * 120
# A remote account alice asked to follow, with a long name and about text, and a long post.
REMOTE = "r" * 40 + "@remote.example"
REMOTE_NAME = "N" * 300  # longer than is kept
# An app alice authorized, with the longest name there can be, one word, and a long address.
APP_NAME = "A" * NAME_MAX
APP_CLIENT_ID = "hostile-app"
APP_CALLBACK = "https://app.example/" + "c" * 300


@pytest.fixture
def app_config():
    """Federation on, as on a public site: a search for @name@host asks its server."""
    return {"FEDERATION": True}


@pytest.fixture
def hostile(app, make_user):
    """alice follows a user whose name, profile, posts and message are as long as allowed;
    she has a message from them and an export waiting for the (absent) worker."""
    alice = make_user("alice")
    long_user = make_user(LONG_NAME, about_me=LONG_WORD)
    add_posts(app, long_user, [LONG_WORD, f"look {LONG_URL}", f"@{LONG_NAME} {LONG_WORD[:60]}"])
    add_posts(app, alice, ["a short one"])
    follow(app, alice, long_user)
    follow(app, long_user, alice)
    with app.app_context():
        db.session.add(Message(sender_id=long_user, recipient_id=alice, body=LONG_WORD))
        db.session.add(Message(sender_id=alice, recipient_id=long_user, body=LONG_URL))
        db.session.add(
            Task(
                id=str(uuid.uuid4()),
                name="export_posts",
                description="Export of your posts",
                user_id=alice,
                status=TaskStatus.QUEUED,
            )
        )
        db.session.commit()
        remote = remote_account_with_a_post()
        db.session.add(
            actors.FollowRequest(follower_id=alice, followed_id=remote, activity_id="https://x/1")
        )
        db.session.commit()
        authorized_app(alice)
        db.session.commit()
    return {"alice": alice, "long": long_user}


def authorized_app(user_id: int) -> None:
    app, _secret = OAuthApp.register(APP_NAME, [APP_CALLBACK], "read write", LONG_URL)
    app.client_id = APP_CLIENT_ID
    user = db.session.get(User, user_id)
    OAuthToken.issue(app, user, {"access_token": "hostile-token", "scope": "read write"})


def remote_account_with_a_post() -> int:
    document = actor_document("https://remote.example", REMOTE.partition("@")[0])
    document["name"] = REMOTE_NAME
    document["summary"] = f"<p>{LONG_WORD}</p><p><a href='{LONG_URL}'>{LONG_URL}</a></p>"
    user = actors.store_remote_actor(document)
    db.session.flush()
    html = f"<p>{LONG_WORD} {LONG_WORD}</p><p><a href='{LONG_URL}'>{LONG_URL}</a></p>"
    # Older than the other posts: the pages of posts the other tests read stay as they were.
    old = datetime.datetime(2001, 1, 1)
    post = Post(body=LONG_WORD, html=html, ap_id="https://remote.example/1", timestamp=old)
    post.user_id = user.id
    db.session.add(post)
    return user.id


SIGNED_IN_PAGES = {
    "home": "/index",
    "explore": "/explore",
    "profile": f"/user/{LONG_NAME}",
    "remote-profile": f"/user/{REMOTE}",
    "own-profile": "/user/alice",
    "messages": "/messages",
    "tasks": "/tasks",
    "search": f"/search?q={LONG_WORD[:64]}*",
    "reply": f"/send_message/{LONG_NAME}?reply_to=1",
    "sent": "/messages/sent",
    "post": "/post/2",
    "followers": f"/user/{LONG_NAME}/followers",
    "following": "/user/alice/following",
    "people-search": f"/search?q={LONG_NAME[:10]}",
    "edit-profile": "/edit_profile",
    "settings": "/settings",
    "import": "/import",
    "not-found": f"/send_message/{LONG_NAME}x",
    "remote-search": "/search?" + urllib.parse.urlencode({"q": f"@{REMOTE}"}),
    # Not found (the .invalid name never resolves): the search page says why, in full.
    "remote-search-unknown": "/search?"
    + urllib.parse.urlencode({"q": "@" + "u" * 60 + "@" + "h" * 60 + ".invalid"}),
    "authorize": "/oauth/authorize?"
    + urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": APP_CLIENT_ID,
            "redirect_uri": APP_CALLBACK,
            "scope": "read write",
        }
    ),
}
SIGNED_OUT_PAGES = {
    "login": "/login",
    "register": "/register",
    "reset": "/reset_password_request",
}


def visit_all(browser, base_url, check, walks=WIDTHS, color_scheme="light"):
    """Open every page at each of `walks` ({name: (width, height)}), signed out then in;
    `check(page, name)` on each."""
    for walk, (width, height) in walks.items():
        context = browser.new_context(
            base_url=base_url,
            viewport={"width": width, "height": height},
            color_scheme=color_scheme,
        )
        page = context.new_page()
        try:
            for name, path in SIGNED_OUT_PAGES.items():
                page.goto(path)
                check(page, f"{name}-{walk}")
            browser_login(page, base_url)
            for name, path in SIGNED_IN_PAGES.items():
                page.goto(path)
                check(page, f"{name}-{walk}")
        finally:
            context.close()


def test_every_page_fits_the_screen(live_server, browser, hostile):
    SCREENSHOTS.mkdir(exist_ok=True)
    too_wide = []

    def check(page, name):
        page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)
        scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if scroll > inner:
            too_wide.append(f"{name}: {scroll} px in a {inner} px window")

    visit_all(browser, live_server, check)
    print(f"screenshots in {SCREENSHOTS}")
    assert not too_wide


AXE_SERIOUS = """async () => {
    const found = (await axe.run(document, {resultTypes: ['violations']})).violations;
    const line = node => node.target.join(' ') + (node.any[0] ? ' ' + node.any[0].message : '');
    return found
        .filter(v => v.impact === 'serious' || v.impact === 'critical')
        .map(v => v.id + ': ' + v.nodes.map(line).join(' | '));
}"""


def axe_violations(page) -> list[str]:
    """axe-core's serious and critical findings on the page, one line each."""
    # Evaluated through the DevTools protocol, not as a <script> tag: the site's CSP (rightly)
    # refuses inline script, and the page under test keeps its CSP on.
    page.evaluate(AXE.read_text())
    return page.evaluate(AXE_SERIOUS)


def test_no_serious_accessibility_problem_on_any_page(live_server, browser, hostile):
    if not AXE.exists():
        pytest.skip("axe-core is not installed (./run.sh test runs npm ci)")
    SCREENSHOTS.mkdir(exist_ok=True)
    problems = []

    def check(page, name):
        if "dark" in name:
            page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)
        problems.extend(f"{name}: {line}" for line in axe_violations(page))

    # The phone in the light theme, the laptop in the dark one: both colour schemes are read.
    visit_all(browser, live_server, check, {"phone": WIDTHS["phone"]})
    visit_all(browser, live_server, check, {"laptop-dark": WIDTHS["laptop"]}, "dark")
    assert not problems, "\n".join(problems)


def test_dark_mode_follows_the_system(live_server, browser, hostile):
    from playwright.sync_api import expect

    for scheme in ("dark", "light"):
        context = browser.new_context(base_url=live_server, color_scheme=scheme)
        page = context.new_page()
        page.goto("/login")
        assert page.evaluate("document.documentElement.dataset.bsTheme") == scheme
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert (background == "rgb(255, 255, 255)") == (scheme == "light"), background
        page.emulate_media(color_scheme="light" if scheme == "dark" else "dark")
        # …and follows a change of the system's setting while the page is open. (`expect`, not
        # wait_for_function: that one evaluates a string, which the site's CSP refuses.)
        other = "light" if scheme == "dark" else "dark"
        expect(page.locator("html")).to_have_attribute("data-bs-theme", other)
        context.close()


def test_skip_link_and_keyboard_popup(live_server, browser, hostile):
    from playwright.sync_api import expect

    context = browser.new_context(base_url=live_server, viewport={"width": 390, "height": 844})
    page = context.new_page()
    browser_login(page, live_server)
    page.goto("/explore")
    page.keyboard.press("Tab")
    skip = page.locator("a:has-text('Skip to main content')")
    expect(skip).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()

    # Focusing a name opens its card, inside the window; Tab goes into it; Escape closes it.
    name = page.locator("#post-3 a.user-link")
    name.focus()
    card = page.locator(".user-popup")
    expect(card).to_be_visible()
    expect(card).to_have_attribute("aria-label", LONG_NAME)
    box = card.bounding_box()
    assert 0 <= box["x"] and box["x"] + box["width"] <= 390, box
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.keyboard.press("Tab")
    expect(card.locator("a").first).to_be_focused()
    for _link in ("followers", "following", "button"):
        page.keyboard.press("Tab")
    expect(card.locator("button:has-text('Unfollow')")).to_be_focused()
    page.keyboard.press("Enter")
    expect(card.locator("button:has-text('Follow')")).to_be_focused()
    expect(card.locator(".followers-count")).to_have_text("1")
    page.keyboard.press("Escape")
    expect(card).to_be_hidden()
    expect(name).to_be_focused()
    page.wait_for_timeout(500)  # longer than the card's delay: it must stay closed
    expect(card).to_be_hidden()
    # The pointer still works as before.
    page.hover("#post-2 a.user-link")
    expect(card).to_be_visible()
    page.mouse.move(0, 0)
    expect(card).to_be_hidden()
    context.close()


def test_character_counter_warns_instead_of_cutting(live_server, page, hostile):
    from playwright.sync_api import expect

    browser_login(page, live_server)
    box = page.locator("textarea[name=post]")
    counter = page.locator("#post-count")
    expect(counter).to_have_text("140 of 140 characters left")
    box.fill("x" * 139)
    expect(counter).to_have_text("1 of 140 characters left")
    box.fill("x" * 141)  # as a paste would: nothing is cut
    expect(counter).to_have_text("1 character too many (at most 140)")
    expect(box).to_have_class(re.compile("is-invalid"))
    assert len(box.input_value()) == 141
    page.click("form button[type=submit]:has-text('Post')")
    expect(page.locator(".invalid-feedback")).to_contain_text("140")
    assert len(page.locator("textarea[name=post]").input_value()) == 141


def counter_says(left: int) -> str:
    """What the counter reads with `left` characters left (negative: too many)."""
    if left >= 0:
        return f"{left} of {POST_MAX} characters left"
    over = -left
    plural = "character" if over == 1 else "characters"
    return f"{over} {plural} too many (at most {POST_MAX})"


@pytest.mark.parametrize(
    "text",
    [
        f"{EMOJI} x",
        f"{ACUTE}\n{ACUTE}",
        "\N{MATHEMATICAL BOLD CAPITAL A}\N{GOTHIC LETTER AHSA}\r\n\r\nz",
        at_the_limit(),
        at_the_limit(extra=1),
    ],
    ids=["emoji", "combining", "astral-crlf", "at-limit", "one-over"],
)
def test_character_counter_counts_as_the_server_does(live_server, page, make_user, text):
    from playwright.sync_api import expect

    make_user("alice")
    browser_login(page, live_server)
    page.fill("textarea[name=post]", text)
    expect(page.locator("#post-count")).to_have_text(counter_says(POST_MAX - text_length(text)))


def test_a_post_at_the_limit_is_accepted_and_one_more_is_refused(live_server, page, app, make_user):
    """Typed in the box with Enter for the line breaks: what the counter allows, the server
    takes; one character more and both refuse."""
    from playwright.sync_api import expect

    make_user("alice")
    browser_login(page, live_server)
    box, counter = page.locator("textarea[name=post]"), page.locator("#post-count")
    lines = at_the_limit().split("\r\n")
    box.fill(lines[0])
    for line in lines[1:]:
        box.press("End")
        page.keyboard.press("Enter")
        page.keyboard.insert_text(line)
    expect(counter).to_have_text(counter_says(0))
    page.keyboard.insert_text("!")
    expect(counter).to_have_text(counter_says(-1))
    page.click("form button[type=submit]:has-text('Post')")
    expect(page.locator(".invalid-feedback")).to_contain_text(f"longer than {POST_MAX}")
    expect(counter).to_have_text(counter_says(-1))  # the box still holds what was sent
    box.press("Control+End")
    page.keyboard.press("Backspace")
    expect(counter).to_have_text(counter_says(0))
    page.click("form button[type=submit]:has-text('Post')")
    page.wait_for_url(f"{live_server}/index")
    expect(page.locator(".alert-success")).to_be_visible()
    with app.app_context():
        (stored,) = db.session.scalars(sa.select(Post.body))
    assert stored == at_the_limit().replace("\r\n", "\n") and text_length(stored) == POST_MAX
