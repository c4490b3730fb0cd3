"""The inbox before verification: a Delete flood from actors never seen fetches nothing, a
server over its rate limit gets 429 with Retry-After; and after it: an activity whose
application was lost with its worker is applied when a consumer starts."""

import json
import time
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

import actors
import fedsign
import inbound
from database import db, utcnow
from federation_in import InboxActivity
from follows import Follows
from models import Post, User
from tests.helpers import actor_document
from tests.live import wait_for
from tests.receivers import Receiver
from tests.test_deliveries import start_site

SITE = "https://local.example"


@pytest.fixture
def app_config():
    return {
        "SITE_URL": SITE,
        "FEDERATION": True,
        "FEDERATION_ALLOW_HTTP": True,
        "FEDERATION_ALLOW_PRIVATE": True,
    }


@pytest.fixture
def stranger():
    """A remote server on loopback that would serve its actors' keys: it counts each fetch."""
    fetches = []
    server = Receiver()
    original = server.server.RequestHandlerClass

    class Counting(original):
        def do_GET(self):
            fetches.append(self.path)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server.server.RequestHandlerClass = Counting
    server.fetches = fetches
    yield server
    server.stop()


def post(client, activity, key_id, private_pem):
    body = json.dumps(activity).encode()
    headers = fedsign.sign_request(
        "POST", SITE + "/inbox", key_id=key_id, private_pem=private_pem, body=body
    )
    return client.post("/inbox", data=body, headers=headers, base_url=SITE)


def test_a_delete_flood_from_strangers_fetches_nothing(app, client, stranger):
    private_pem = fedsign.new_key_pair()[0]
    base = f"http://{stranger.host}"
    for number in range(40):  # each from a different actor
        actor = f"{base}/users/gone{number}"
        delete = {"id": f"{actor}#delete", "type": "Delete", "actor": actor, "object": actor}
        assert post(client, delete, f"{actor}#main-key", private_pem).status_code == 202
    assert stranger.fetches == []
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(InboxActivity.id))) == 0
    # The same from an unknown actor that is not a Delete is verified: its key is fetched.
    actor = f"{base}/users/someone"
    create = {"id": f"{actor}/1", "type": "Create", "actor": actor, "object": {}}
    assert post(client, create, f"{actor}#main-key", private_pem).status_code == 401
    assert stranger.fetches == ["/users/someone"]


@pytest.mark.parametrize("limit", [5, 60])  # counted exactly; counted in batches
def test_inbox_rate_limit_per_server(app, client, limit):
    app.config["FEDERATION_INBOX_LIMIT_PER_HOST"] = limit
    keys = fedsign.new_key_pair()
    with app.app_context():
        actors.store_remote_actor(actor_document("https://remote.example", "ann", keys[1]))
        db.session.commit()
    ann = "https://remote.example/users/ann"

    def like(number):
        activity = {"id": f"{ann}/likes/{number}", "type": "Like", "actor": ann, "object": SITE}
        return post(client, activity, f"{ann}#main-key", keys[0])

    assert [like(n).status_code for n in range(limit)] == [202] * limit
    refused = like(limit)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(InboxActivity.id))) == limit


def test_senders_come_back_later_while_the_worker_is_behind(app, client):
    app.config["FEDERATION_INBOX_BACKLOG_MAX"] = 3
    keys = fedsign.new_key_pair()
    with app.app_context():
        actors.store_remote_actor(actor_document("https://remote.example", "ann", keys[1]))
        for number in range(4):  # more waiting for the worker than the inbox takes
            db.session.add(InboxActivity(activity_id=f"https://remote.example/a/{number}",
                                         actor_url="https://remote.example/users/ann",
                                         body="{}", state="received"))  # fmt: skip
        db.session.commit()
    ann = "https://remote.example/users/ann"

    def like(number):
        activity = {"id": f"{ann}/likes/{number}", "type": "Like", "actor": ann, "object": SITE}
        return post(client, activity, f"{ann}#main-key", keys[0])

    refused = like(1)
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) > 0
    assert "try again later" in refused.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(InboxActivity.id))) == 4
        db.session.execute(sa.update(InboxActivity).values(state="applied"))
        db.session.commit()
    time.sleep(inbound.BACKLOG_COUNTED_EVERY)  # each web process counts now and then
    assert like(2).status_code == 202
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(InboxActivity.id))) == 5


def create_note(actor, number):
    return {
        "id": f"{actor}/create/{number}",
        "type": "Create",
        "actor": actor,
        "object": {
            "id": f"{actor}/notes/{number}",
            "type": "Note",
            "attributedTo": actor,
            "content": f"<p>note {number}</p>",
            "to": ["https://www.w3.org/ns/activitystreams#Public"],
        },
    }


def test_a_batch_applies_each_row_once_and_fails_only_the_bad_one(app, users, monkeypatch):
    ann = "https://remote.example/users/ann"
    with app.app_context():
        ann_user = actors.store_remote_actor(
            actor_document("https://remote.example", "ann", fedsign.new_key_pair()[1])
        )
        Follows(db.session.get(User, users["alice"])).follow(ann_user)  # her notes are kept
        gone = "https://remote.example/users/gone"  # an actor never stored
        for number, actor in enumerate([ann, gone, ann, ann]):
            activity = create_note(actor, number)
            db.session.add(InboxActivity(activity_id=activity["id"], actor_url=actor,
                                         body=json.dumps(activity), state="received"))  # fmt: skip
        db.session.commit()
    real_apply = inbound.federation_in.apply

    def apply_or_break(activity, actor):
        if activity["id"].endswith("/create/3"):
            raise RuntimeError("the database went away")  # an error of ours: tried again
        real_apply(activity, actor)

    monkeypatch.setattr(inbound.federation_in, "apply", apply_or_break)
    with app.app_context():
        assert inbound.apply_received.call_local() == 4
        rows = {row.activity_id.rsplit("/", 1)[1]: row for row in db.session.scalars(
            sa.select(InboxActivity))}  # fmt: skip
        assert rows["0"].state == rows["2"].state == "applied"
        assert rows["1"].state == "failed" and "its actor is gone" in rows["1"].error
        assert rows["3"].state == "received"
        assert rows["3"].claimed_until > utcnow() + timedelta(seconds=60)  # not re-claimed now
        posts = db.session.scalars(sa.select(Post.ap_id).order_by(Post.ap_id)).all()
        assert posts == [f"{ann}/notes/0", f"{ann}/notes/2"]
        # Nothing is due now: a second pass claims nothing.
        assert inbound.apply_received.call_local() == 0


@pytest.mark.consumer
def test_received_activity_lost_with_its_worker_is_applied_at_restart(
    app, users, live, monkeypatch
):
    keys = fedsign.new_key_pair()
    with app.app_context():
        ann_user = actors.store_remote_actor(
            actor_document("https://remote.example", "ann", keys[1])
        )
        Follows(db.session.get(User, users["alice"])).follow(ann_user)  # her notes are kept
        ann = "https://remote.example/users/ann"
        activity = {
            "id": f"{ann}/create/1",
            "type": "Create",
            "actor": ann,
            "object": {
                "id": f"{ann}/notes/1",
                "type": "Note",
                "attributedTo": ann,
                "content": "<p>hello</p>",
                "to": ["https://www.w3.org/ns/activitystreams#Public"],
            },
        }
        # Stored by the inbox; the task that would apply it died with its consumer.
        db.session.add(
            InboxActivity(
                activity_id=activity["id"],
                actor_url=ann,
                body=json.dumps(activity),
                received_at=utcnow() - timedelta(seconds=5),
            )
        )
        db.session.commit()
    start_site(live, monkeypatch, SITE_URL=SITE, FEDERATION_INBOX_RETRY_SECONDS=1)

    def applied():
        with app.app_context():
            db.session.expire_all()
            return db.session.scalar(sa.select(InboxActivity.state)) == "applied"

    wait_for(applied, timeout=30, what="the activity applied after the restart")
    with app.app_context():
        assert db.session.scalar(sa.select(Post.ap_id)) == f"{ann}/notes/1"


def test_an_activity_that_met_an_error_is_tried_again_at_doubling_ages():
    received = datetime(2026, 1, 1, 12, 0, 0)
    first = 300.0
    tries = [inbound.next_try(received, received + timedelta(seconds=age), first)
             for age in (0, 299, 300, 1000, 4000)]  # fmt: skip
    assert [(t - received).total_seconds() for t in tries] == [300, 300, 600, 1200, 4800]
