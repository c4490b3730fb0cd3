"""Four Mastodon clients that nobody here wrote, each in a scripted session against a live
gunicorn, as an app user would drive them: Mastodon.py and toot (Python, from
requirements-dev.txt), masto and megalodon (Node, from package.json, run by the scripts in
tests/clients/).

Each session signs in through our OAuth server, then posts, follows and reads; the test
checks what the client got back and what reached our database. Notifications come from
things done on the site's own pages (a follow, a mention), so the API has to report events
it did not cause itself.
"""

import html
import json
import re
import shutil
import subprocess
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from models import POST_MAX
from tests.conftest import PASSWORD
from tests.helpers import add_posts, follow
from tests.live import BIN, CSRF_FIELD, PROJECT_DIR, Browser

CLIENTS = Path(__file__).resolve().parent / "clients"
NODE_MODULES = PROJECT_DIR / "node_modules"
TOOT = BIN / "toot"
OOB = "urn:ietf:wg:oauth:2.0:oob"
SCOPES = ["read", "write", "follow"]
# Where megalodon's app says the user comes back to: a loopback address, as a desktop app's
# (nothing listens there; the test reads the code from the redirect itself).
CALLBACK = "http://127.0.0.1/megalodon/callback"
MAX_PAGES = 50  # a timeline that keeps saying "more" must not page forever
APPROVE_LABEL = re.compile(r"approve|authori[sz]e|allow", re.IGNORECASE)
TAG = re.compile(r"<[^>]+>")


@pytest.fixture
def site(live):
    """A live gunicorn on the `app` fixture's database (alice, bob and carol), whose
    SITE_URL is its own address: the OAuth metadata sends clients there. Federation is on
    over plain http, as a site behind https would have it, so NodeInfo answers."""
    site = live(FEDERATION_ALLOW_HTTP="true")
    site.start_web(site_url=True)
    yield site
    # Shown with a failing test's output: the server's side of a client's error.
    print(f"--- web.log (last 6000 characters)\n{read_tail(site.data_dir / 'web.log')}")


@pytest.fixture
def node():
    """Run a script of tests/clients/ with Node; returns the JSON object it printed."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("Node.js and npm are not installed; the masto and megalodon sessions skipped")
    for package in ("masto", "megalodon"):
        if not (NODE_MODULES / package / "package.json").exists():
            pytest.fail(f"{package} is not installed: `./run.sh test` installs it (npm ci)")

    def run(script, *args) -> dict:
        result = subprocess.run(
            ["node", CLIENTS / script, *args],
            cwd=PROJECT_DIR,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{script} {args[:1]} failed:\n{result.stderr}"
        return json.loads(result.stdout)

    return run


def read_tail(path: Path, size: int = 6000) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else "(no log)"


def text_of(content: str) -> str:
    """A status's `content` (HTML) as the plain text that was posted."""
    return html.unescape(TAG.sub("", content)).strip()


def bodies_of(site, username) -> list[str]:
    """The bodies of `username`'s posts in our database, oldest first."""
    rows = site.query(
        'SELECT post.body FROM post JOIN "user" ON "user".id = post.user_id '
        'WHERE "user".username = :name ORDER BY post.id',
        {"name": username},
    )
    return [body for (body,) in rows]


def follows(site, follower, followed) -> bool:
    """Whether our followers table says `follower` follows `followed`."""
    rows = site.query(
        'SELECT 1 FROM followers JOIN "user" a ON a.id = followers.follower_id '
        'JOIN "user" b ON b.id = followers.followed_id WHERE a.username = :a AND b.username = :b',
        {"a": follower, "b": followed},
    )
    return bool(rows)


def user_id(site, username) -> int:
    return site.query('SELECT id FROM "user" WHERE username = :name', {"name": username})[0][0]


def on_the_site(site, username, *actions) -> None:
    """Sign in to the site's pages as `username` and submit each (path, form) in turn."""
    browser = Browser(site.url)
    browser.login(username, PASSWORD)
    for path, form in actions:
        status, body = browser.submit(path, form, token_from="/index")
        assert status == 200, body[:500]


def seed_for_alice(site, app) -> list[str]:
    """Bob's posts and events for alice's sessions: three older posts (straight into the
    database), then, on the site's pages, bob follows alice and mentions her. The texts of
    bob's posts, newest first."""
    bob = user_id(site, "bob")
    add_posts(app, bob, 3, body="bob's older post {i}")
    mention = "@alice have you seen the pangolins"
    on_the_site(site, "bob", ("/follow/alice", {}), ("/index", {"post": mention}))
    return [mention, "bob's older post 2", "bob's older post 1", "bob's older post 0"]


def assert_seen_once(pages, expected_texts, limit=2):
    """Paging met every status of the timeline once, newest first, `limit` at most a page."""
    assert len(pages) < MAX_PAGES, "the timeline never stopped paging"
    assert all(len(page) <= limit for page in pages), [len(page) for page in pages]
    statuses = [status for page in pages for status in page]
    ids = [status["id"] for status in statuses]
    assert len(ids) == len(set(ids)), f"a status came twice: {ids}"
    assert [text_of(status["content"]) for status in statuses] == expected_texts


# --- the authorization page, as a user approves an app ---------------------------------


class Forms(HTMLParser):
    """The forms of a page: each one's action, its fields with their values, and its
    buttons (name, value, label)."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []
        self._button: dict | None = None

    def handle_starttag(self, tag, attrs):
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append({"action": attributes.get("action", ""), "fields": {}, "buttons": []})
        elif not self.forms:
            return
        elif tag == "input" and attributes.get("type") == "submit":
            self.forms[-1]["buttons"].append({**attributes, "label": attributes.get("value", "")})
        elif tag == "input" and attributes.get("name"):
            self.forms[-1]["fields"][attributes["name"]] = attributes.get("value", "")
        elif tag == "button":
            self._button = {**attributes, "label": ""}
            self.forms[-1]["buttons"].append(self._button)

    def handle_data(self, data):
        if self._button is not None:
            self._button["label"] += data

    def handle_endtag(self, tag):
        if tag == "button":
            self._button = None


def approve(page_url: str, page_html: str) -> tuple[str, dict]:
    """Where the page's Approve button posts, and the form it posts (CSRF token included)."""
    parser = Forms()
    parser.feed(page_html)
    for form in parser.forms:
        for button in form["buttons"]:
            if APPROVE_LABEL.search(button["label"]):
                fields = dict(form["fields"])
                if button.get("name"):
                    fields[button["name"]] = button.get("value", "")
                return urllib.parse.urljoin(page_url, form["action"]), fields
    raise AssertionError(f"no Approve button on the authorization page:\n{page_html[:3000]}")


def signed_in(site, username) -> requests.Session:
    """A requests session signed in to the site's pages as `username`."""
    session = requests.Session()
    page = session.get(f"{site.url}/login", timeout=30).text
    form = {"username": username, "password": PASSWORD}
    form["csrf_token"] = CSRF_FIELD.search(page).group(1)
    response = session.post(f"{site.url}/login", data=form, timeout=30)
    assert "Logout" in response.text, response.text[:500]
    return session


def approved_code(site, username, authorize_url) -> str:
    """Sign in as `username`, open `authorize_url`, press Approve: the code in the redirect."""
    session = signed_in(site, username)
    page = session.get(authorize_url, timeout=30)
    assert page.status_code == 200, (page.status_code, page.text[:1000])
    assert "megalodon test session" in page.text, "the page does not name the app"
    action, form = approve(page.url, page.text)
    assert "csrf_token" in form, f"the Approve form has no CSRF token: {form}"
    response = session.post(action, data=form, allow_redirects=False, timeout=30)
    assert response.status_code in (302, 303), (response.status_code, response.text[:1000])
    location = response.headers["Location"]
    assert location.startswith(CALLBACK + "?"), location
    return urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["code"][0]


# --- the four sessions ---------------------------------------------------------------


def test_mastodon_py_session(site, app):
    from mastodon import Mastodon

    older = seed_for_alice(site, app)
    client_id, client_secret = Mastodon.create_app(
        "Mastodon.py test session", scopes=SCOPES, redirect_uris=OOB, api_base_url=site.url
    )
    api = Mastodon(client_id=client_id, client_secret=client_secret, api_base_url=site.url)
    # Mastodon.py's password grant takes the e-mail address as the username.
    assert api.log_in("alice@example.com", PASSWORD, scopes=SCOPES, allow_http=True)

    me = api.account_verify_credentials()
    assert (me.username, me.acct) == ("alice", "alice")
    assert me.followers_count == 1  # bob, from the site's page

    text = "Mastodon.py says hello to the pangolins & friends"
    status = api.status_post(text)
    assert text_of(status.content) == text
    assert status.account.username == "alice"
    assert bodies_of(site, "alice") == [text]

    found = api.search_v2("bob", result_type="accounts")
    bob = next(account for account in found.accounts if account.acct == "bob")
    assert api.account_follow(bob.id).following
    assert follows(site, "alice", "bob")
    assert api.account_relationships([bob.id])[0].following

    page, pages = api.timeline_home(limit=2), []
    while page and len(pages) < MAX_PAGES:
        pages.append(page)
        page = api.fetch_next(page)
    assert_seen_once(pages, [text, *older])

    seen = {(note.type, note.account.acct) for note in api.notifications()}
    assert {("follow", "bob"), ("mention", "bob")} <= seen, seen
    mention = next(note for note in api.notifications() if note.type == "mention")
    assert text_of(mention.status.content) == older[0]

    statuses = api.search_v2("pangolins", result_type="statuses").statuses
    assert status.id in [found.id for found in statuses]

    instance = api.instance()
    assert instance.configuration.statuses.max_characters == POST_MAX
    assert instance.api_versions["mastodon"] >= 1


def toot(home: Path, *args) -> str:
    """Run toot's command line with its own config dir; its output (it must succeed)."""
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "PATH": str(BIN),
        "PYTHONIOENCODING": "utf-8",
    }
    result = subprocess.run(
        [TOOT, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"toot {args[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_toot_session(site, app, tmp_path):
    home = tmp_path / "toot-home"
    add_posts(app, user_id(site, "alice"), ["alice writes about otters"])

    out = toot(home, "login_cli", "-i", site.url, "-e", "carol@example.com", "-p", PASSWORD)
    assert "Successfully logged in" in out
    assert "carol" in toot(home, "whoami")

    out = toot(home, "post", "toot says hello to otters")
    assert re.search(r"Toot posted: http\S+", out), out
    assert bodies_of(site, "carol") == ["toot says hello to otters"]

    assert "You are now following alice" in toot(home, "follow", "alice")
    assert follows(site, "carol", "alice")

    timeline = toot(home, "timeline", "--once", "--count", "10")
    assert "toot says hello to otters" in timeline
    assert "alice writes about otters" in timeline
    assert timeline.index("toot says hello") < timeline.index("alice writes"), timeline


def test_masto_session(site, app, node):
    older = seed_for_alice(site, app)
    texts = ["masto post one", "masto post two", "masto post three"]

    result = node("masto_session.mjs", site.url, "alice@example.com", PASSWORD, *texts)

    assert set(SCOPES) <= set(result["scope"].split())
    assert (result["account"]["username"], result["account"]["acct"]) == ("alice", "alice")
    assert [text_of(status["content"]) for status in result["created"]] == texts
    assert bodies_of(site, "alice") == texts
    # alice follows nobody: her home is her own posts only, newest first.
    assert_seen_once(result["pages"], texts[::-1])
    assert len(result["pages"]) >= 2
    statuses = result["instance"]["configuration"]["statuses"]
    assert statuses["maxCharacters"] == POST_MAX
    seen = {(note["type"], note["account"]["acct"]) for note in result["notifications"]}
    assert {("follow", "bob"), ("mention", "bob")} <= seen, seen
    mention = next(note for note in result["notifications"] if note["type"] == "mention")
    assert text_of(mention["status"]["content"]) == older[0]


def test_megalodon_session(site, app, node):
    follow(app, user_id(site, "bob"), user_id(site, "carol"))
    add_posts(app, user_id(site, "carol"), ["carol posted this earlier"])

    registered = node("megalodon_session.mjs", "register", site.url, CALLBACK)
    assert registered["authorizeUrl"].startswith(f"{site.url}/oauth/authorize?")
    code = approved_code(site, "bob", registered["authorizeUrl"])
    text = "megalodon was approved in a browser"
    result = node(
        "megalodon_session.mjs",
        "session",
        site.url,
        registered["clientId"],
        registered["clientSecret"],
        code,
        CALLBACK,
        text,
    )

    assert set(SCOPES) <= set(result["scope"].split())
    assert result["account"]["username"] == "bob"
    assert text_of(result["posted"]["content"]) == text
    assert bodies_of(site, "bob") == [text]
    home = [text_of(status["content"]) for status in result["home"]]
    assert home == [text, "carol posted this earlier"]
    assert result["home"][0]["id"] == result["posted"]["id"]
    # NodeInfo names software megalodon treats as Mastodon.
    assert result["detected"] == {"software": "mastodon"}
