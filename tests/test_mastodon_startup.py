"""Endpoints apps call when they start, for features this site has in part or not at all:
each answers what is true here (a real list, an accept-everything policy, a clear "not
found") instead of an unknown-endpoint 404."""

import pytest

from database import db
from models import User
from tests.helpers import follow
from tests.mastodon_support import bearer, make_token


@pytest.fixture
def tokens(app, users):
    return {name: make_token(app, user_id) for name, user_id in users.items()}


def test_familiar_followers_are_the_ones_you_follow(app, client, make_user, users, tokens):
    dave = make_user("dave")
    follow(app, users["alice"], users["bob"], users["carol"])
    follow(app, users["bob"], dave)
    follow(app, users["carol"], dave)
    follow(app, dave, users["carol"])  # dave follows carol, but alice does not follow dave
    asked = f"id[]={dave}&id[]={users['carol']}&id[]=999999&id[]=x"
    response = client.get(
        f"/api/v1/accounts/familiar_followers?{asked}", headers=bearer(tokens["alice"])
    )
    assert response.status_code == 200
    by_id = {item["id"]: [a["acct"] for a in item["accounts"]] for item in response.json}
    assert by_id == {str(dave): ["bob", "carol"], str(users["carol"]): []}

    with app.app_context():
        db.session.get_one(User, users["bob"]).disabled = True
        db.session.commit()
    response = client.get(
        f"/api/v1/accounts/familiar_followers?id[]={dave}", headers=bearer(tokens["alice"])
    )
    assert [a["acct"] for a in response.json[0]["accounts"]] == ["carol"]
    read_only = make_token(app, users["alice"], scope="read:statuses")
    response = client.get("/api/v1/accounts/familiar_followers", headers=bearer(read_only))
    assert response.status_code == 403


@pytest.mark.parametrize("action", ["authorize", "reject"])
def test_there_are_no_follow_requests_to_answer(app, client, users, tokens, action):
    path = f"/api/v1/follow_requests/{users['bob']}/{action}"
    response = client.post(path, headers=bearer(tokens["alice"]))
    assert (response.status_code, response.json) == (404, {"error": "Record not found"})
    read_only = make_token(app, users["alice"], scope="read")
    assert client.post(path, headers=bearer(read_only)).status_code == 403
    assert client.post(path).status_code == 401


def test_notification_policy_accepts_everything(client, users, tokens):
    v1 = client.get("/api/v1/notifications/policy", headers=bearer(tokens["alice"]))
    assert v1.status_code == 200
    assert v1.json["filter_not_following"] is False
    assert v1.json["filter_private_mentions"] is False
    assert v1.json["summary"] == {"pending_requests_count": 0, "pending_notifications_count": 0}
    v2 = client.get("/api/v2/notifications/policy/", headers=bearer(tokens["alice"]))
    assert v2.status_code == 200
    assert {v2.json[key] for key in v2.json if key.startswith("for_")} == {"accept"}
    assert client.get("/api/v2/notifications/policy").status_code == 401


def test_push_subscriptions_are_clearly_not_supported(app, client, users, tokens):
    headers = bearer(tokens["alice"])
    subscription = {
        "subscription": {
            "endpoint": "https://push.example/abc",
            "keys": {"p256dh": "key", "auth": "secret"},
        },
        "data": {"alerts": {"mention": True}},
    }
    for method in ("get", "post", "put"):
        response = client.open("/api/v1/push/subscription", method=method, json=subscription,
                               headers=headers)  # fmt: skip
        assert response.status_code == 404, method
        assert "does not send push notifications" in response.json["error"]
    response = client.delete("/api/v1/push/subscription", headers=headers)
    assert (response.status_code, response.json) == (200, {})
    without_push = make_token(app, users["alice"], scope="read write")
    response = client.get("/api/v1/push/subscription", headers=bearer(without_push))
    assert response.status_code == 403
