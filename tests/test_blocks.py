"""Blocks: a user blocks an account or a domain; an admin blocks a domain for the site."""

import pytest
import sqlalchemy as sa

import blocks
import federation_out
from blocks import AccountBlock, DomainBlock, UserDomainBlock
from database import db
from follows import Follows
from mailboxes import Mailbox
from models import Message, User, followers
from tests.helpers import add_posts, follow


def follows(app, follower_id, followed_id) -> bool:
    with app.app_context():
        query = sa.select(followers).where(
            followers.c.follower_id == follower_id, followers.c.followed_id == followed_id
        )
        return db.session.execute(query).first() is not None


def send(app, sender_id, recipient_id, body):
    with app.app_context():
        sender, recipient = db.session.get(User, sender_id), db.session.get(User, recipient_id)
        Mailbox(sender).send(recipient, body)
        db.session.commit()


@pytest.fixture
def alice(client, auth, users):
    auth.login("alice")
    return client


# --- account blocks -------------------------------------------------------------------------


def test_blocking_ends_follows_both_ways_and_hides_posts(app, alice, users):
    follow(app, users["alice"], users["bob"])
    follow(app, users["bob"], users["alice"])
    add_posts(app, users["bob"], ["bob was here"])
    assert "bob was here" in alice.get("/index").get_data(as_text=True)

    response = alice.submit("/block/bob")
    assert response.status_code == 302 and response.headers["Location"] == "/user/bob"
    assert not follows(app, users["alice"], users["bob"])
    assert not follows(app, users["bob"], users["alice"])
    with app.app_context():
        assert db.session.get(AccountBlock, (users["alice"], users["bob"])) is not None
    for page in ("/index", "/explore", "/search?q=bob", "/user/bob"):
        assert "bob was here" not in alice.get(page).get_data(as_text=True), page
    profile = alice.get("/user/bob").get_data(as_text=True)
    assert "You blocked bob" in profile and "/unblock/bob" in profile
    assert "/follow/bob" not in profile
    # Carol still sees bob's posts: a block is one user's choice.
    alice.submit("/logout")
    alice.submit("/login", {"username": "carol", "password": "correct horse battery"})
    assert "bob was here" in alice.get("/explore").get_data(as_text=True)


def test_neither_side_can_follow_or_write_while_blocked(app, client, alice, users):
    alice.submit("/block/bob")
    refused = alice.submit("/follow/bob", follow_redirects=True).get_data(as_text=True)
    assert "You cannot follow bob" in refused
    assert not follows(app, users["alice"], users["bob"])
    alice.submit("/logout")
    client.submit("/login", {"username": "bob", "password": "correct horse battery"})
    client.submit("/follow/alice")
    assert not follows(app, users["bob"], users["alice"])
    response = client.submit("/send_message/alice", {"message": "hello?"})
    assert response.status_code == 403
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Message)) == 0


def test_messages_of_a_blocked_account_are_hidden_until_unblocked(app, alice, users):
    send(app, users["bob"], users["alice"], "a message from bob")
    send(app, users["carol"], users["alice"], "a message from carol")
    with app.app_context():
        assert Mailbox(db.session.get(User, users["alice"])).unread_count() == 2
    alice.submit("/block/bob")
    page = alice.get("/messages").get_data(as_text=True)
    assert "a message from bob" not in page and "a message from carol" in page
    with app.app_context():
        assert Mailbox(db.session.get(User, users["alice"])).unread_count() == 1
    alice.submit("/unblock/bob")
    assert "a message from bob" in alice.get("/messages").get_data(as_text=True)
    with app.app_context():
        assert db.session.get(AccountBlock, (users["alice"], users["bob"])) is None


def test_blocks_are_listed_in_settings_with_unblock(app, alice, users):
    alice.submit("/block/bob")
    alice.submit("/block_domain", {"domain": "Spam.Example"})
    page = alice.get("/settings").get_data(as_text=True)
    assert 'id="blocks"' in page
    assert "/unblock/bob?next=" in page and "Everyone on spam.example" in page
    response = alice.submit("/unblock_domain", {"domain": "spam.example"})
    assert response.headers["Location"].endswith("/settings#blocks")
    with app.app_context():
        assert db.session.scalars(sa.select(UserDomainBlock)).all() == []


def test_block_needs_csrf_and_a_real_account(app, alice, users):
    assert alice.post("/block/bob").status_code == 400
    assert alice.submit("/block/nobody").status_code == 404
    refused = alice.submit("/block/alice", follow_redirects=True).get_data(as_text=True)
    assert "You cannot block yourself" in refused
    with app.app_context():
        assert db.session.scalars(sa.select(AccountBlock)).all() == []


def test_blocking_twice_is_one_block(app, alice, users):
    alice.submit("/block/bob")
    alice.submit("/block/bob")
    with app.app_context():
        assert len(db.session.scalars(sa.select(AccountBlock)).all()) == 1


# --- domains --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("example.org", "example.org"),
        ("  Example.ORG. ", "example.org"),
        ("https://social.example.org/@bob", "social.example.org"),
        ("@bob@social.example.org", "social.example.org"),
        ("127.0.0.2:8443", "127.0.0.2:8443"),
        ("bücher.example", "xn--bcher-kva.example"),
    ],
)
def test_domains_are_normalized(typed, stored):
    assert blocks.normalize_domain(typed) == stored


@pytest.mark.parametrize(
    "typed", ["", "   ", "exa mple.org", "-bad.org", "a..b", "x" * 300 + ".org", "\ud800.org"]
)
def test_bad_domains_are_refused(app, alice, users, typed):
    assert blocks.normalize_domain(typed) is None
    if not typed.isprintable():
        return  # a lone surrogate: no browser can send it in a form
    response = alice.submit("/block_domain", {"domain": typed}, follow_redirects=True)
    assert response.status_code == 200
    with app.app_context():
        assert db.session.scalars(sa.select(UserDomainBlock)).all() == []


def test_site_block_covers_subdomains_and_ports(app, users):
    with app.app_context():
        db.session.add(DomainBlock(domain="bad.example"))
        db.session.commit()
        assert blocks.domain_blocked("bad.example")
        assert blocks.domain_blocked("BAD.example:8443")
        assert blocks.domain_blocked("a.b.bad.example")
        assert not blocks.domain_blocked("notbad.example")
        assert not blocks.domain_blocked("example")
        assert not blocks.domain_blocked("not a domain")


def test_user_domain_block_covers_subdomains(app, alice, users):
    alice.submit("/block_domain", {"domain": "bad.example"})
    with app.app_context():
        assert blocks.user_blocks_domain(users["alice"], "social.bad.example")
        assert not blocks.user_blocks_domain(users["bob"], "social.bad.example")
        assert not blocks.domain_blocked("bad.example")  # only alice's


# --- the admin's domain blocks --------------------------------------------------------------


@pytest.fixture
def as_admin(client, auth, admin):
    auth.login("root")
    return client


def test_admin_blocks_and_unblocks_a_domain(app, as_admin):
    response = as_admin.submit("/admin/domains/", {"domain": "https://Spam.example/"})
    assert response.status_code == 302
    page = as_admin.get("/admin/domains/").get_data(as_text=True)
    assert "spam.example" in page and "Blocked domains" in page
    with app.app_context():
        assert blocks.domain_blocked("spam.example")
    bad = as_admin.submit("/admin/domains/", {"domain": "not a domain"})
    assert bad.status_code == 400 and "not a domain name" in bad.get_data(as_text=True)
    as_admin.submit("/admin/domains/unblock", {"domain": "spam.example"})
    with app.app_context():
        assert not blocks.domain_blocked("spam.example")


def test_admin_domain_pages_are_404_for_users(app, alice, client):
    assert alice.get("/admin/domains/").status_code == 404
    assert alice.submit("/admin/domains/", {"domain": "spam.example"}).status_code == 404
    with app.app_context():
        assert db.session.scalars(sa.select(DomainBlock)).all() == []
    alice.submit("/logout")
    assert client.get("/admin/domains/").status_code == 404


# --- remote accounts and their domains --------------------------------------------------------


@pytest.fixture
def remote_accounts(app, users):
    """zed@bad.example, amy@social.bad.example:8443 and ok@good.example, each with a post,
    each following alice and followed by her."""
    ids = {}
    with app.app_context():
        for handle in ("zed@bad.example", "amy@social.bad.example:8443", "ok@good.example"):
            user = User(username=handle, domain=handle.partition("@")[2])
            db.session.add(user)
            db.session.flush()
            ids[handle] = user.id
        db.session.commit()
    for handle, user_id in ids.items():
        add_posts(app, user_id, [f"post by {handle}"])
        follow(app, user_id, users["alice"])
        follow(app, users["alice"], user_id)
    send(app, ids["zed@bad.example"], users["alice"], "a message from zed")
    return ids


def test_a_users_domain_block_hides_its_accounts_and_ends_follows(
    app, alice, users, remote_accounts
):
    alice.submit("/block_domain", {"domain": "bad.example"})
    for handle, user_id in remote_accounts.items():
        blocked = handle != "ok@good.example"
        assert follows(app, users["alice"], user_id) != blocked, handle
        assert follows(app, user_id, users["alice"]) != blocked, handle
    for page in ("/index", "/explore", "/search?q=post"):
        html = alice.get(page).get_data(as_text=True)
        # (search marks the word "post")
        assert "by zed@bad.example" not in html and "by amy@" not in html, page
        assert "by ok@good.example" in html, page
    assert "a message from zed" not in alice.get("/messages").get_data(as_text=True)
    profile = alice.get("/user/zed@bad.example").get_data(as_text=True)
    assert "post by zed" not in profile and "Their posts are hidden" in profile
    # Others see them still.
    alice.submit("/logout")
    alice.submit("/login", {"username": "bob", "password": "correct horse battery"})
    assert "post by zed@bad.example" in alice.get("/explore").get_data(as_text=True)


def test_the_remote_profile_offers_to_block_its_domain(app, alice, remote_accounts):
    profile = alice.get("/user/ok@good.example").get_data(as_text=True)
    assert 'name="domain" value="good.example"' in profile
    assert "Block everyone on good.example" in profile
    response = alice.submit("/block_domain?next=/user/ok@good.example", {"domain": "good.example"})
    assert response.headers["Location"] == "/user/ok@good.example"
    with app.app_context():
        assert blocks.user_blocks_domain(db.session.scalar(User.named("alice")).id, "good.example")


def test_a_site_block_hides_the_domain_from_everyone(
    app, client, auth, admin, users, remote_accounts
):
    auth.login("root")
    client.submit("/admin/domains/", {"domain": "bad.example"})
    auth.logout()
    for handle, user_id in remote_accounts.items():
        blocked = handle != "ok@good.example"
        assert follows(app, users["alice"], user_id) != blocked, handle
        assert follows(app, user_id, users["alice"]) != blocked, handle
    auth.login("bob")
    explore = client.get("/explore").get_data(as_text=True)
    assert "post by zed" not in explore and "post by amy" not in explore
    assert "post by ok@good.example" in explore
    for page in ("/user/zed@bad.example", "/user/amy@social.bad.example:8443/popup"):
        assert client.get(page).status_code == 404, page
    assert client.get("/user/ok@good.example").status_code == 200
    assert "zed@bad.example" not in client.get("/search?q=bad").get_data(as_text=True)


def test_blocked_by_on_postgresql(pg_app):
    """The same queries on PostgreSQL: LIKE built from the listed domains, and the union."""
    with pg_app.app_context():
        alice = db.session.scalar(User.named("alice"))
        for handle in ("zed@bad.example", "amy@social.bad.example:8443", "ok@good.example"):
            db.session.add(User(username=handle, domain=handle.partition("@")[2]))
        db.session.add(UserDomainBlock(user_id=alice.id, domain="bad.example"))
        db.session.add(DomainBlock(domain="good.example"))
        db.session.add(
            AccountBlock(user_id=alice.id, blocked_id=db.session.scalar(User.named("bob")).id)
        )
        db.session.commit()
        hidden = set(db.session.scalars(blocks.blocked_by(alice)))
        names = set(db.session.scalars(sa.select(User.username).where(User.id.in_(hidden))))
        assert names == {"bob", "zed@bad.example", "amy@social.bad.example:8443", "ok@good.example"}
        assert blocks.hidden_from(alice, db.session.scalar(User.named("ok@good.example")))
        assert blocks.domain_blocked("www.good.example")


def test_no_follow_crosses_a_block_whatever_asks(app, alice, users):
    """The one follow path (pages and apps alike) refuses, both ways."""
    alice.submit("/block/bob")
    with app.app_context():
        alice_user, bob = db.session.get(User, users["alice"]), db.session.get(User, users["bob"])
        federation_out.change_following(bob, alice_user, True)
        federation_out.change_following(alice_user, bob, True)
        assert not Follows(bob).is_following(alice_user)
        assert not Follows(alice_user).is_following(bob)
