"""Private messages: sending, the inbox, the unread badge and who may read what."""

import re

import pytest
import sqlalchemy as sa

from database import db
from models import Message, User
from notifications import Notification

BADGE = re.compile(r'<span id="message_count" class="([^"]*)"[^>]*>(\d+)</span>')


def switch_to(auth, username):
    """Sign out, then in as `username` (one browser, taking turns)."""
    auth.logout()
    auth.login(username)


def badge(client):
    """(count, visible) of the navbar's unread badge on the home page."""
    match = BADGE.search(client.get("/index").get_data(as_text=True))
    assert match, "no unread badge in the navbar"
    return int(match.group(2)), "d-none" not in match.group(1)


def unread_notification(app, username):
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.username == username))
        query = sa.select(Notification).where(
            Notification.user_id == user.id, Notification.name == "unread_message_count"
        )
        notifications = db.session.scalars(query).all()
        assert len(notifications) <= 1, "one notification per name"
        return notifications[0].get_data() if notifications else None


UP_TO = re.compile(r'name="up_to" type="hidden" value="([^"]*)"')


def read_messages(client, page="/messages"):
    """What the page script does once /messages is shown: POST its mark-read form."""
    html = client.get(page).get_data(as_text=True)
    up_to = UP_TO.search(html)
    assert up_to, "no mark-read form on the page"
    return client.submit("/messages/read", {"up_to": up_to.group(1)})


def send(client, to, text):
    return client.submit(f"/send_message/{to}", {"message": text})


def test_send_message_reaches_recipient_and_updates_badge(app, client, auth):
    auth.login("bob")
    response = send(client, "alice", "hi alice")
    assert response.status_code == 302
    assert response.headers["Location"] == "/user/alice"
    assert unread_notification(app, "alice") == 1
    send(client, "alice", "second one")
    assert unread_notification(app, "alice") == 2
    assert badge(client) == (0, False)  # bob has no unread messages

    switch_to(auth, "alice")
    assert badge(client) == (2, True)
    # The poller sees the count as a notification.
    names = {n["name"]: n["data"] for n in client.get("/notifications?since=0").get_json()}
    assert names["unread_message_count"] == 2

    page = client.get("/messages").get_data(as_text=True)
    assert page.index("second one") < page.index("hi alice"), "newest first"
    # Showing the page changes nothing (a link from another site must not clear the badge);
    # the page's own POST marks what it showed as read.
    assert unread_notification(app, "alice") == 2
    assert read_messages(client).status_code == 302
    assert unread_notification(app, "alice") == 0
    assert badge(client) == (0, False)


def test_new_message_after_reading_counts_again(app, client, auth):
    auth.login("bob")
    send(client, "alice", "one")
    switch_to(auth, "alice")
    read_messages(client)
    switch_to(auth, "bob")
    send(client, "alice", "two")
    assert unread_notification(app, "alice") == 1
    switch_to(auth, "alice")
    assert badge(client) == (1, True)


def test_a_message_arriving_after_the_page_was_shown_stays_unread(app, client, auth):
    auth.login("bob")
    send(client, "alice", "one")
    switch_to(auth, "alice")
    html = client.get("/messages").get_data(as_text=True)
    switch_to(auth, "bob")
    send(client, "alice", "two, sent while alice was reading")
    switch_to(auth, "alice")
    response = client.submit(
        "/messages/read",
        {"up_to": UP_TO.search(html).group(1)},
        headers={"Accept": "application/json"},
    )
    assert response.get_json() == {"unread": 1}
    assert unread_notification(app, "alice") == 1


def test_marking_read_needs_a_post_with_csrf(app, client, auth):
    auth.login("bob")
    send(client, "alice", "one")
    switch_to(auth, "alice")
    assert client.get("/messages/read").status_code == 405
    assert client.post("/messages/read", data={"up_to": ""}).status_code == 400
    assert unread_notification(app, "alice") == 1


def test_messages_are_paginated(app, client, auth):
    auth.login("bob")
    for n in range(5):
        send(client, "alice", f"message number {n}")
    switch_to(auth, "alice")
    first = client.get("/messages").get_data(as_text=True)
    second = client.get("/messages?page=2").get_data(as_text=True)
    assert [f"message number {n}" in first for n in range(5)] == [False, False, True, True, True]
    assert [f"message number {n}" in second for n in range(5)] == [True, True, False, False, False]
    assert "/messages?page=2" in first


def test_nobody_reads_anyone_elses_messages(app, client, auth):
    auth.login("bob")
    send(client, "alice", "for alice only")
    switch_to(auth, "carol")
    assert "for alice only" not in client.get("/messages").get_data(as_text=True)
    assert "for alice only" not in client.get("/messages?page=1").get_data(as_text=True)
    assert "for alice only" not in client.get("/user/alice").get_data(as_text=True)
    # Carol's visit does not mark alice's messages read.
    assert unread_notification(app, "alice") == 1
    auth.logout()
    assert client.get("/messages").status_code == 302  # login required


@pytest.mark.parametrize(
    ("to", "status", "reason"),
    [
        ("alice", 400, "You cannot send a private message to yourself."),
        ("nobody", 404, "There is no user called nobody."),
    ],
)
def test_refused_recipients(app, client, auth, to, status, reason):
    auth.login("alice")
    response = send(client, to, "hello")
    assert response.status_code == status
    assert reason in response.get_data(as_text=True)
    assert client.get(f"/send_message/{to}").status_code == status
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Message)) == 0


@pytest.mark.parametrize(
    ("text", "error"),
    [("", "Write something first."), ("   ", "Write something first."), ("x" * 141, "140")],
)
def test_invalid_message_body(app, client, auth, text, error):
    auth.login("alice")
    response = send(client, "bob", text)
    assert response.status_code == 400
    assert error in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Message)) == 0


def test_longest_message_is_accepted(app, client, auth):
    auth.login("alice")
    assert send(client, "bob", "x" * 140).status_code == 302


def test_send_requires_csrf_and_login(app, client, auth):
    auth.login("alice")
    response = client.post("/send_message/bob", data={"message": "no token"})
    assert response.status_code == 400
    auth.logout()
    assert send(client, "bob", "anonymous").status_code == 302
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Message)) == 0


def test_message_body_is_escaped(app, client, auth):
    auth.login("bob")
    send(client, "alice", "<script>alert(1)</script>")
    switch_to(auth, "alice")
    page = client.get("/messages").get_data(as_text=True)
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_profile_offers_private_message_to_others_only(client, auth):
    auth.login("alice")
    assert "/send_message/bob" in client.get("/user/bob").get_data(as_text=True)
    assert "/send_message/alice" not in client.get("/user/alice").get_data(as_text=True)
