"""The core app on PostgreSQL, the scale-out database (runs when TEST_DATABASE_URL is set)."""

import json

import sqlalchemy as sa

from database import db
from follows import Follows
from importing import add_imported_posts
from models import Post, User
from tests.conftest import PASSWORD, schema_differences


def test_migrations_build_exactly_the_models_on_postgres(pg_app):

    with pg_app.app_context(), db.engine.connect() as connection:
        assert schema_differences(connection) == []


def test_register_post_follow_and_timeline_on_postgres(pg_app):
    client = pg_app.test_client()
    response = client.submit(
        "/register",
        {
            "username": "carol",
            "email": "carol@example.com",
            "password": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert response.status_code == 302
    response = client.submit(
        "/register",
        {
            "username": "dave",
            "email": "CAROL@example.com",
            "password": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert response.status_code == 400

    client.submit("/login", {"username": "bob", "password": PASSWORD})
    client.submit("/index", {"post": "bob on postgres"})
    client.submit("/logout")

    client.submit("/login", {"username": "alice", "password": PASSWORD})
    client.submit("/index", {"post": "alice on postgres"})
    assert "bob on postgres" not in client.get("/index").get_data(as_text=True)
    client.submit("/follow/bob")
    html = client.get("/index").get_data(as_text=True)
    assert html.index("alice on postgres") < html.index("bob on postgres")
    assert "bob on postgres" in client.get("/explore").get_data(as_text=True)

    with pg_app.app_context():
        post_id = db.session.scalar(sa.select(Post.id).where(Post.body == "alice on postgres"))
    assert client.submit(f"/post/{post_id}/delete").status_code == 302
    with pg_app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Post.id))) == 1


def test_deleting_a_user_cascades_on_postgres(pg_app):
    with pg_app.app_context():
        alice = db.session.scalar(sa.select(User).where(User.username == "alice"))
        bob = db.session.scalar(sa.select(User).where(User.username == "bob"))
        Follows(alice).follow(bob)
        db.session.add(Post(body="soon gone", author=alice))
        db.session.commit()
        db.session.execute(sa.delete(User).where(User.id == alice.id))
        db.session.commit()
        assert db.session.scalar(sa.select(sa.func.count(Post.id))) == 0
        assert Follows(bob).followers_count() == 0


def test_a_resumed_export_on_postgres(pg_app, monkeypatch):
    from datetime import timedelta

    from database import utcnow
    from tests.helpers import add_posts
    from tests.test_tasks import export_crashing_once_then_resumed

    with pg_app.app_context():
        alice = User.by_username("alice").id
    moments = [utcnow() - timedelta(minutes=i // 4) for i in range(50, 0, -1)]
    add_posts(pg_app, alice, 50, timestamps=moments, newest_first=True)

    content, expected = export_crashing_once_then_resumed(pg_app, alice, monkeypatch)

    assert json.loads(content) == expected


def test_a_resumed_export_with_one_post_left_on_postgres(pg_app, monkeypatch):
    from tests.helpers import add_posts
    from tests.test_tasks import export_crashing_once_then_resumed

    with pg_app.app_context():
        alice = User.by_username("alice").id
    add_posts(pg_app, alice, 8, newest_first=True)

    content, expected = export_crashing_once_then_resumed(
        pg_app, alice, monkeypatch, crash_at=8, checkpointed=7
    )

    assert json.loads(content) == expected


def test_importing_twice_adds_nothing_on_postgres(pg_app):
    from datetime import datetime

    from importer import ImportedPost, post_key

    moment = datetime(2024, 5, 1, 12)
    batch = [ImportedPost(b, moment, None, post_key(b, moment)) for b in ("one", "two", "one")]
    with pg_app.app_context():
        alice = User.by_username("alice")
        assert alice is not None
        assert add_imported_posts(alice, batch) == 2
        assert add_imported_posts(alice, batch) == 0
        db.session.commit()
        assert alice.posts_count() == 2
        assert Follows(alice).follow_usernames(["bob", "alice", "nobody"]) == 1
        assert Follows(alice).follow_usernames(["bob"]) == 0


def test_export_request_is_queued_once_on_postgres(pg_app):
    """The row is recorded and the task enqueued with its id; a second request starts nothing."""
    import tasks
    from jobs import Task

    client = pg_app.test_client()
    client.submit("/login", {"username": "alice", "password": PASSWORD})

    page = client.submit("/export_posts", follow_redirects=True).get_data(as_text=True)

    assert "already in progress" not in page
    with pg_app.app_context():
        (row,) = db.session.scalars(sa.select(Task)).all()
    assert row.status == "queued"
    assert [task.id for task in tasks.huey.pending()] == [row.id]

    page = client.submit("/export_posts", follow_redirects=True).get_data(as_text=True)

    assert "An export of your posts is already in progress." in page
    assert len(tasks.huey.pending()) == 1
    with pg_app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Task.id))) == 1


def test_received_activities_are_claimed_apart_and_applied_on_postgres(pg_app):
    import actors
    import fedsign
    import inbound
    from federation_in import InboxActivity
    from tests.helpers import actor_document
    from tests.test_inbox_guard import create_note

    ann = "https://remote.example/users/ann"
    with pg_app.app_context():
        alice = db.session.scalar(sa.select(User).where(User.username == "alice"))
        document = actor_document("https://remote.example", "ann", fedsign.new_key_pair()[1])
        Follows(alice).follow(actors.store_remote_actor(document))
        for number in range(5):
            activity = create_note(ann, number)
            db.session.add(InboxActivity(activity_id=activity["id"], actor_url=ann,
                                         body=json.dumps(activity), state="received"))  # fmt: skip
        db.session.commit()
        # Two claims take different rows (what two consumers would do).
        first, second = inbound.claim(2), inbound.claim(2)
        assert len(first) == len(second) == 2 and not set(first) & set(second)
        db.session.execute(sa.update(InboxActivity).values(claimed_until=None))
        db.session.commit()
        assert inbound.apply_received.call_local() == 5
        assert db.session.scalar(sa.select(sa.func.count(Post.id))) == 5
        states = db.session.scalars(sa.select(InboxActivity.state)).all()
        assert states == ["applied"] * 5


def test_a_delivery_claim_takes_no_more_than_asked_on_postgres(pg_app):
    import delivery_store

    with pg_app.app_context():
        inboxes = [f"https://server{n}.example/inbox" for n in range(6)]
        delivery_store.store(
            "{}", (None, "key", "pem"), inboxes, delivery_store.Policy.from_config()
        )
        db.session.commit()
        policy = delivery_store.Policy.from_config()
        first = delivery_store.claim_due(2, "one", set(), policy)
        second = delivery_store.claim_due(2, "two", set(), policy)
        assert len(first) == len(second) == 2
        assert not {c.id for c in first} & {c.id for c in second}
