"""Post cards are kept per app once written (formatting.CardKit.card): a kept card must show
exactly what a new one would, for whoever looks, wherever it is shown."""

import re

import sqlalchemy as sa

from database import db
from models import Post, User
from tests.helpers import add_posts

SPANISH = {"Accept-Language": "es"}
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def cards(html):
    """The post cards of a page, in order."""
    return re.findall(r'<div class="d-flex gap-3 py-3 border-bottom post".*?\n</div>', html, re.S)


def without_tokens(html):
    return TOKEN.sub('name="csrf_token" value="…"', html)


def page(client, url, **kwargs):
    return client.get(url, **kwargs).get_data(as_text=True)


def test_a_kept_card_is_the_card_written_anew(app, client, auth, users):
    add_posts(app, users["alice"], ["see https://example.com and @bob", "plain words"])
    auth.login("alice")
    first = page(client, "/user/alice")
    assert len(cards(first)) == 2
    app.extensions["post_cards"].clear()  # the next page writes every card again
    written_anew = page(client, "/user/alice")
    kept = page(client, "/user/alice")
    assert cards(without_tokens(kept)) == cards(without_tokens(written_anew))
    assert '<a class="mention" href="/user/bob">@bob</a>' in kept


def test_a_kept_cards_delete_form_has_this_pages_token_and_place(app, client, auth, users):
    add_posts(app, users["alice"], ["to delete"])
    auth.login("alice")
    page(client, "/user/alice")  # written and kept
    html = page(client, "/index?page=1")
    tokens = set(TOKEN.findall(html))
    assert len(tokens) == 1, "every form of the page carries the page's token"
    (card,) = cards(html)
    action = re.search(r'<form action="([^"]+)" method="post"', card).group(1)
    assert action.endswith("?next=/index?page%3D1"), action
    response = client.post(action.replace("&amp;", "&"), data={"csrf_token": tokens.pop()})
    assert response.status_code == 302 and response.headers["Location"] == "/index?page=1"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Post)) == 0


def test_a_kept_card_changes_with_what_it_shows(app, client, auth, users):
    add_posts(app, users["bob"], ["bob's post"])
    auth.login("alice")

    def change(statement):
        with app.app_context():
            db.session.execute(statement)
            db.session.commit()
        (card,) = cards(page(client, "/explore"))
        return card

    (before,) = cards(page(client, "/explore"))
    assert "like" not in before and ">bob</a>" in before
    assert "2 likes" in change(sa.update(Post).values(like_count=2))
    assert "1 boost" in change(sa.update(Post).values(announce_count=1))
    assert "<p>remote html</p>" in change(sa.update(Post).values(html="<p>remote html</p>"))
    renamed = change(sa.update(User).where(User.id == users["bob"]).values(username="robert"))
    assert ">robert</a>" in renamed and ">bob</a>" not in renamed
    new_picture = change(sa.update(User).where(User.id == users["bob"]).values(avatar_version=7))
    assert "v=7" in new_picture
    (spanish,) = cards(page(client, "/explore", headers=SPANISH))
    assert "dijo" in spanish and "2 me gusta · 1 impulso" in spanish


def test_a_kept_card_shows_delete_to_its_author_only(app, client, auth, users):
    add_posts(app, users["alice"], ["alice's post"])
    auth.login("alice")
    (own,) = cards(page(client, "/explore"))
    assert "btn-outline-danger" in own
    auth.logout()
    auth.login("bob")
    (others,) = cards(page(client, "/explore"))
    assert "btn-outline-danger" not in others and "alice&#39;s post" in others


def test_cards_kept_are_bounded(app, client, auth, users, monkeypatch):
    monkeypatch.setattr("formatting.CARDS_KEPT", 2)
    add_posts(app, users["alice"], 3)
    auth.login("alice")
    assert len(cards(page(client, "/explore"))) == 3
    assert len(app.extensions["post_cards"]) <= 2
