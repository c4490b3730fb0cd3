"""The language of posts, and translating a post through a LibreTranslate-compatible server
(a real HTTP server started by the test)."""

import json
import re
import time

import pytest
import sqlalchemy as sa

import language_detection
from database import db
from models import Post, User
from tests.helpers import TranslationServer, add_posts
from tests.live import wait_for
from tests.test_import import tasks_of, upload

ENGLISH = "Good morning everyone, what a lovely day to go for a walk in the park"
SPANISH = "Buenos días a todos, qué día tan bonito para dar un paseo por el parque"


@pytest.fixture
def app_config(request):
    """TRANSLATE_URL points at the `translator` server when the test uses that fixture."""
    if "translator" not in request.fixturenames:
        return {}
    server = request.getfixturevalue("translator")
    return {
        "TRANSLATE_URL": server.url,
        "TRANSLATE_API_KEY": "secret-key",
        # Long enough for a loaded machine to answer; the drip tests last far longer.
        "TRANSLATE_TIMEOUT": 2.0,
        "TRANSLATE_LIMIT_PER_USER": 3,
    }


def post_id_of(app, body: str) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(Post.id).where(Post.body == body))


def language_of(app, post_id: int) -> str | None:
    with app.app_context():
        return db.session.get_one(Post, post_id).language


def translate(client, post_id, token=None, **headers):
    """POST /translate as the page script does: JSON, with the CSRF token in a header."""
    headers = {"Accept": "application/json", **headers}
    if token is not None:
        headers["X-CSRFToken"] = token
    return client.post("/translate", data=json.dumps({"post_id": post_id}), headers=headers,
                       content_type="application/json")  # fmt: skip


TRANSLATE_BUTTON = re.compile(r'data-translate-url="[^"]+" data-post-id="(\d+)"')


def add_detected_posts(app, user_id: int, bodies: list[str]) -> None:
    """Give a user posts whose languages are looked up, as the worker's backfill does."""
    add_posts(app, user_id, bodies)
    with app.app_context():
        Post.detect_languages(0, 10)
        db.session.commit()


def choose_language(app, user_id: int, language: str) -> None:
    with app.app_context():
        db.session.get_one(User, user_id).choose_language(language)
        db.session.commit()


# --- detection --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, language",
    [
        (ENGLISH, "en"),
        (SPANISH, "es"),
        ("Guten Morgen, wie geht es dir heute?", "de"),
        ("ok", ""),  # too short to tell
        ("lol 😀", ""),
        ("https://example.org/a/long/path/to/somewhere @alice #tag", ""),  # no words at all
        ("1234567890 1234567890 !!!", ""),
    ],
)
def test_detect(text, language):
    assert language_detection.detect(text) == language


def test_the_workers_child_detector_answers_as_detect_does():
    texts = [ENGLISH, SPANISH, "ok", "línea uno\nBuenos días a todos, qué día tan bonito", ""]
    detector = language_detection.ChildDetector()
    try:
        assert detector.detect_all(texts) == [language_detection.detect(t) for t in texts]
        assert detector.detect_all(texts[:2]) == ["en", "es"]  # the same child, again
        child = detector.process
    finally:
        detector.close()
    assert child is not None and child.returncode == 0


def test_publishing_detects_the_language(app, client, auth, users):
    auth.login()
    for body in (ENGLISH, SPANISH, "ok"):
        response = client.submit("/index", {"post": body})
        assert response.status_code == 302

    assert language_of(app, post_id_of(app, ENGLISH)) == "en"
    assert language_of(app, post_id_of(app, SPANISH)) == "es"
    assert language_of(app, post_id_of(app, "ok")) == ""  # looked at, not known


def test_detection_that_fails_never_refuses_a_post(app, client, auth, users, monkeypatch):
    class Broken:
        def predict(self, text, k=1):
            raise RuntimeError("the model is broken")

    monkeypatch.setattr(language_detection, "_model", Broken())
    auth.login()

    response = client.submit("/index", {"post": ENGLISH})

    assert response.status_code == 302
    assert language_of(app, post_id_of(app, ENGLISH)) == ""


def test_backfill_fills_posts_without_a_language(app, users):
    add_posts(app, users["bob"], [ENGLISH, SPANISH, "ok", ENGLISH])
    with app.app_context():
        done = db.session.scalar(sa.select(Post).where(Post.body == ENGLISH))
        done.language = "xx"  # already known: left as it is
        db.session.commit()
        after, count = Post.detect_languages(0, 2)
        db.session.commit()
        assert count == 2
        after, count = Post.detect_languages(after, 2)
        db.session.commit()
        assert count == 1  # the one already known is not looked at again
        assert Post.detect_languages(after, 2) == (after, 0)
        languages = db.session.scalars(sa.select(Post.language).order_by(Post.id)).all()
    assert languages == ["xx", "es", "", "en"]


# --- the link -------------------------------------------------------------------------------


def test_no_translate_url_no_link_and_no_endpoint(app, client, auth, users):
    add_detected_posts(app, users["alice"], [SPANISH])
    auth.login()

    page = client.get("/index").get_data(as_text=True)
    assert SPANISH in page and "translate-button" not in page
    assert translate(client, post_id_of(app, SPANISH), client.csrf_token()).status_code == 404


def test_link_under_posts_in_another_language_than_the_page(app, client, auth, users, translator):
    auth.login()
    for body in (ENGLISH, SPANISH, "ok"):
        client.submit("/index", {"post": body})

    def buttons() -> set[int]:
        page = client.get("/index").get_data(as_text=True)
        return {int(n) for n in TRANSLATE_BUTTON.findall(page)}

    assert buttons() == {post_id_of(app, SPANISH)}  # an English page
    choose_language(app, users["alice"], "es")
    assert buttons() == {post_id_of(app, ENGLISH)}  # a Spanish page; "ok" has no language
    client.submit("/logout")
    assert "translate-button" not in client.get(f"/post/{post_id_of(app, SPANISH)}").text


# --- POST /translate ----------------------------------------------------------------------


@pytest.fixture
def spanish_post(app, client, auth, users):
    add_detected_posts(app, users["bob"], [SPANISH])
    auth.login()
    return post_id_of(app, SPANISH)


def test_translate_sends_the_post_and_answers_its_translation(client, spanish_post, translator):
    response = translate(client, spanish_post, client.csrf_token())

    assert response.status_code == 200
    assert response.json == {"text": f"[en] {SPANISH}", "language": "en"}
    assert translator.requests == [
        {"q": SPANISH, "source": "es", "target": "en", "format": "text", "api_key": "secret-key"}
    ]


def test_translate_into_the_readers_chosen_language(app, client, users, auth, translator):
    add_detected_posts(app, users["bob"], [ENGLISH])
    choose_language(app, users["alice"], "es")
    auth.login()

    response = translate(client, post_id_of(app, ENGLISH), client.csrf_token())

    assert response.json["text"] == f"[es] {ENGLISH}"
    assert translator.requests[0]["source"] == "en"


REFUSED = (
    "This post cannot be translated: it is already in your language, or its language is not known."
)


def test_only_posts_offered_a_link_are_translated(app, client, users, auth, translator):
    add_detected_posts(app, users["bob"], [ENGLISH, "ok"])  # "ok": too short to tell
    add_posts(app, users["bob"], [SPANISH])  # its language not looked up yet
    auth.login()
    page = client.get("/explore").get_data(as_text=True)
    assert all(body in page for body in (ENGLISH, "ok", SPANISH))
    assert TRANSLATE_BUTTON.findall(page) == []  # none of them has the link

    for body in (ENGLISH, "ok", SPANISH):
        response = translate(client, post_id_of(app, body), client.csrf_token())
        assert response.status_code == 400, body
        assert response.json["message"] == REFUSED
    assert translator.hits == []


def test_a_post_in_the_readers_chosen_language_is_refused_in_it(
    app, client, users, auth, translator
):
    add_detected_posts(app, users["bob"], [SPANISH])
    choose_language(app, users["alice"], "es")
    auth.login()

    response = translate(client, post_id_of(app, SPANISH), client.csrf_token())

    assert response.status_code == 400
    assert response.json["message"] == (
        "Esta publicación no se puede traducir: ya está en su idioma, "
        "o no se sabe en qué idioma está."
    )
    assert translator.hits == []


def test_translate_without_csrf_token_is_400(client, spanish_post, translator):
    response = translate(client, spanish_post)
    assert response.status_code == 400
    assert translator.requests == []


def test_translate_needs_a_signed_in_user(client, app, users, translator):
    add_posts(app, users["bob"], [SPANISH])
    token = client.csrf_token()
    response = translate(client, post_id_of(app, SPANISH), token)
    assert response.status_code == 401
    assert response.json["message"] == "Please log in to access this page."
    assert translator.requests == []


@pytest.mark.parametrize("post_id", [999999, 2**31])
def test_translate_a_post_that_does_not_exist_is_404(client, spanish_post, translator, post_id):
    response = translate(client, post_id, client.csrf_token())
    assert response.status_code == 404 if post_id < 2**31 else 400
    assert translator.requests == []


def post_translate(client, body: str, content_type="application/json"):
    """POST /translate with `body` as it is, and the CSRF token."""
    return client.post(
        "/translate",
        data=body,
        content_type=content_type,
        headers={"Accept": "application/json", "X-CSRFToken": client.csrf_token()},
    )


@pytest.mark.parametrize(
    "body",
    [
        '{"text": "translate me"}',
        "{}",
        '{"post_id": "1"}',
        '{"post_id": 1.0}',
        '{"post_id": 1e400}',
        '{"post_id": true}',
        '{"post_id": null}',
        '{"post_id": [1]}',
        '{"post_id": {"id": 1}}',
        '{"post_id": 0}',
        '{"post_id": -1}',
        '{"post_id": 18446744073709551617}',  # past 64 bits
    ],
)
def test_translate_takes_only_a_post_id(client, spanish_post, translator, body):
    response = post_translate(client, body)
    assert response.status_code == 400
    assert "post_id" in response.json["message"]
    assert translator.hits == []


@pytest.mark.parametrize(
    "body, message",
    [
        ("[" * 1_000_000, "The body is nested too deeply."),
        ("[" * 1000 + "]" * 1000, "The body is nested too deeply."),
        ('{"post_id": ' + "[" * 1000 + "]" * 1000 + "}", "The body is nested too deeply."),
        ('{"post_id": ' + "1" * 5000 + "}", "The body is not valid JSON."),  # over int()'s limit
        ("nope", "The body is not valid JSON."),
        ('{"post_id": 1', "The body is not valid JSON."),
        (b"\xff\xfe{", "The body is not valid JSON."),
        ("[1]", "The body must be a JSON object."),
        ("1", "The body must be a JSON object."),
    ],
)
def test_translate_refuses_a_body_that_is_no_json_object(
    client, spanish_post, translator, body, message
):
    response = post_translate(client, body)
    assert response.status_code == 400
    assert response.json["message"] == message
    assert translator.hits == []


def test_translate_wants_json(client, spanish_post, translator):
    form = "application/x-www-form-urlencoded"
    response = post_translate(client, f"post_id={spanish_post}", form)
    assert response.status_code == 415
    assert "application/json" in response.json["message"]
    assert translator.hits == []


def test_failing_service_says_unavailable(app, client, users, spanish_post, translator):
    translator.mode = "fail"
    response = translate(client, spanish_post, client.csrf_token())
    assert response.status_code == 502
    assert response.json["message"] == "Translation service unavailable."

    add_detected_posts(app, users["bob"], [ENGLISH])
    choose_language(app, users["alice"], "es")
    response = translate(client, post_id_of(app, ENGLISH), client.csrf_token())
    assert response.json["message"] == "Servicio de traducción no disponible."


def test_unreachable_service_says_unavailable(app, client, spanish_post, translator):
    app.config["TRANSLATE_URL"] = "http://127.0.0.1:9"  # discard: nothing listens there
    response = translate(client, spanish_post, client.csrf_token())
    assert response.status_code == 502
    assert response.json["message"] == "Translation service unavailable."


def test_slow_service_says_it_is_too_slow(client, spanish_post, translator):
    translator.mode = "slow"
    response = translate(client, spanish_post, client.csrf_token())
    assert response.status_code == 504
    assert "taking too long" in response.json["message"]


@pytest.mark.parametrize("mode", ["drip", "drip-body"])
def test_a_dripping_service_is_given_one_deadline_for_the_whole_answer(
    app, client, spanish_post, translator, mode
):
    # Each byte comes well within TRANSLATE_TIMEOUT of the one before; the whole answer
    # would take far longer than it.
    translator.mode = mode
    deadline = app.config["TRANSLATE_TIMEOUT"]
    assert translator.DRIP_SECONDS < deadline

    started = time.monotonic()
    response = translate(client, spanish_post, client.csrf_token())
    took = time.monotonic() - started

    assert response.status_code == 504
    assert "taking too long" in response.json["message"]
    assert took < deadline + 2  # a correctness bound (the drip would last over 10 s)


def test_an_answer_too_large_is_cut_short(client, spanish_post, translator):
    translator.mode = "huge"
    response = translate(client, spanish_post, client.csrf_token())
    assert response.status_code == 502
    assert response.json["message"] == "Translation service unavailable."


@pytest.fixture
def elsewhere():
    """Another server, where a translation service might try to send the site."""
    server = TranslationServer()
    yield server
    server.stop()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed(client, spanish_post, translator, elsewhere, status):
    translator.mode = "redirect"
    translator.redirect_status = status
    translator.redirect_to = f"{elsewhere.url}/translate"

    response = translate(client, spanish_post, client.csrf_token())

    assert response.status_code == 502
    assert response.json["message"] == "Translation service unavailable."
    assert translator.hits == ["POST /translate"]
    assert elsewhere.hits == []


def test_translations_are_rate_limited_per_user(client, spanish_post, translator):
    token = client.csrf_token()
    for _ in range(3):
        assert translate(client, spanish_post, token).status_code == 200

    response = translate(client, spanish_post, token)

    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    assert response.json["message"].startswith("Too many translations. Please wait ")
    assert len(translator.requests) == 3


# --- the worker fills in the language of older and imported posts ---------------------------


def test_consumer_fills_in_the_language_of_posts_without_one(app, users, live):
    bodies = [ENGLISH, SPANISH, "ok"] * 400  # more than one batch
    add_posts(app, users["bob"], bodies)
    site = live()

    site.start_consumer()

    def languages():
        rows = site.query("SELECT body, language FROM post ORDER BY id")
        return rows if all(language is not None for _body, language in rows) else None

    rows = wait_for(languages, what="every post to have a language")
    assert {body: language for body, language in rows} == {ENGLISH: "en", SPANISH: "es", "ok": ""}
    assert "Looked up the language of 1200 posts" in site.consumer_log()


def test_imported_posts_get_their_language_once_the_import_ends(
    app, client, auth, users, immediate
):
    posts = [
        {"body": body, "timestamp": f"2024-05-0{day}T12:00:00Z"}
        for day, body in enumerate([ENGLISH, SPANISH], start=1)
    ]
    auth.login()

    response = upload(client, json.dumps({"posts": posts}).encode())

    assert response.status_code == 302
    assert tasks_of(app, users["alice"])[0].status == "done"
    assert language_of(app, post_id_of(app, ENGLISH)) == "en"
    assert language_of(app, post_id_of(app, SPANISH)) == "es"
