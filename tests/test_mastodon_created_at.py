"""An account's `created_at`: kept on the user row, so that it is the same on every request,
and back-filled by the migration from the earliest time the site knows for each account."""

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from database import db, utcnow
from microblog import create_app
from models import User
from tests.mastodon_support import bearer, make_token

BEFORE = "d3l1v3ry0a01"  # the revision before the column


def test_created_at_stays_put_for_a_user_without_posts(app, client, users):
    token = make_token(app, users["alice"])
    verify = "/api/v1/accounts/verify_credentials"
    first = client.get(verify, headers=bearer(token)).json["created_at"]
    with app.app_context():
        alice = db.session.get_one(User, users["alice"])
        made = alice.created_at
        alice.last_seen = utcnow() + timedelta(hours=5)  # what used to move it
        db.session.commit()
    again = client.get(verify, headers=bearer(token)).json["created_at"]
    seen_by_bob = client.get(
        f"/api/v1/accounts/{users['alice']}", headers=bearer(make_token(app, users["bob"]))
    ).json["created_at"]
    assert first == again == seen_by_bob == made.replace(microsecond=0).isoformat() + "Z"
    assert abs(made - utcnow()) < timedelta(minutes=5)


def add_old_rows(connection):
    """Three accounts as the previous revision stored them: one with a post, a message and a
    visit (the message is earliest), one with only a visit, one with nothing."""
    ids = {}
    for name, seen in (
        ("early", datetime(2026, 1, 5, 9, 0)),
        ("idle", datetime(2026, 2, 2, 8, 30)),
        ("unseen", None),
    ):
        ids[name] = connection.execute(
            sa.text(
                'INSERT INTO "user" (username, email, last_seen)'
                " VALUES (:name, :email, :seen) RETURNING id"
            ),
            {"name": name, "email": f"{name}@x.test", "seen": seen},
        ).scalar_one()
    connection.execute(
        sa.text("INSERT INTO post (body, timestamp, user_id) VALUES ('hi', :at, :user)"),
        {"at": datetime(2025, 3, 1, 12, 0), "user": ids["early"]},
    )
    connection.execute(
        sa.text(
            "INSERT INTO message (sender_id, recipient_id, body, timestamp)"
            " VALUES (:sender, :recipient, 'psst', :at)"
        ),
        {"sender": ids["early"], "recipient": ids["idle"], "at": datetime(2024, 12, 1, 7, 15)},
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_migration_back_fills_the_earliest_known_time(request, tmp_path, backend):
    from flask_migrate import downgrade, upgrade

    from schema_migrations import init_migrations

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        url = request.getfixturevalue("postgres_url")  # skips without TEST_DATABASE_URL
    app = create_app({"DATA_DIR": str(tmp_path), "SQLALCHEMY_DATABASE_URI": url})
    init_migrations(app)  # as `flask db` does
    with app.app_context():
        upgrade(revision=BEFORE)
        with db.engine.begin() as connection:
            add_old_rows(connection)
        upgrade()
        made = dict(db.session.execute(sa.select(User.username, User.created_at)).all())
        db.session.remove()
        if backend == "postgresql":  # the session's database: leave it empty for the others
            downgrade(revision="base")
        db.engine.dispose()
    assert made["early"] == datetime(2024, 12, 1, 7, 15)
    assert made["idle"] == datetime(2026, 2, 2, 8, 30)
    assert abs(made["unseen"] - utcnow()) < timedelta(minutes=5)
