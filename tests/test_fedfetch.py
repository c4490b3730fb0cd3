"""Outgoing requests: the fence (no plain http, no inside addresses, after DNS too), size
caps, redirects, signatures that an independent implementation (httpsig) verifies, and
finding accounts by WebFinger, against a small HTTP server on loopback."""

import httpsig
import pytest

import actors
import fedfetch
import fedsign
from tests.helpers import actor_document


@pytest.fixture
def app_config():
    return {"SITE_URL": "https://local.example"}


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


@pytest.fixture
def open_fence(app):
    app.config.update(FEDERATION_ALLOW_HTTP=True, FEDERATION_ALLOW_PRIVATE=True)


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://example.com/x", "plain http"),
        ("https://127.0.0.1/x", "not a public address"),
        ("https://localhost/x", "not a public address"),
        ("https://10.1.2.3/x", "not a public address"),
        ("https://192.168.0.1/x", "not a public address"),
        ("https://169.254.169.254/latest/meta-data", "not a public address"),
        ("https://[::1]/x", "not a public address"),
        ("https://[::ffff:127.0.0.1]/x", "not a public address"),
        ("https://[fe80::1]/x", "not a public address"),
        ("https://0.0.0.0/x", "not a public address"),
        ("https://100.64.0.1/x", "not a public address"),
        ("https://240.0.0.1/x", "not a public address"),
        ("ftp://example.com/x", "only http"),
        ("https://user:pw@example.com/x", "only http"),
        ("https:///nohost", "only http"),
    ],
)
def test_unsafe_urls_are_refused(ctx, url, reason):
    with pytest.raises(fedfetch.UnsafeURL, match=reason):
        fedfetch.check_url(url)


def test_public_address_passes(ctx, monkeypatch):
    monkeypatch.setattr(fedfetch, "_resolve", lambda host, port: ["93.184.215.14"])
    fedfetch.check_url("https://example.com/inbox")


def test_name_resolving_to_an_inside_address_is_refused(ctx, monkeypatch):
    # One public and one private answer: the private one could be the one connected to.
    monkeypatch.setattr(fedfetch, "_resolve", lambda host, port: ["93.184.215.14", "10.0.0.5"])
    with pytest.raises(fedfetch.UnsafeURL):
        fedfetch.check_url("https://rebinding.example/inbox")


def test_no_request_reaches_a_refused_address(ctx, remote):
    remote.json("/actor", {"id": "x"})
    with pytest.raises(fedfetch.UnsafeURL):
        fedfetch.fetch_json(remote.base + "/actor")
    assert remote.requests == []


def test_signed_fetch_verifies_with_httpsig(ctx, remote, open_fence):
    remote.json("/actor", {"hello": "world"})
    assert fedfetch.fetch_json(remote.base + "/actor") == {"hello": "world"}
    method, path, headers, _ = remote.requests[0]
    assert headers["Host"] == remote.host
    assert "activity+json" in headers["Accept"]
    key = actors.instance_key()
    verifier = httpsig.HeaderVerifier(
        headers, key.public_pem, method=method, path=path, sign_header="signature"
    )
    assert verifier.verify()
    assert f'keyId="{actors.key_id(None)}"' in headers["Signature"]


def test_posted_activity_has_a_matching_digest(ctx, remote, open_fence, make_user):
    user_id = make_user("alice")
    remote.routes["/inbox"] = (202, {}, b"")
    body = b'{"type": "Create"}'
    assert fedfetch.post_activity(remote.base + "/inbox", body, user_id) == 202
    _, path, headers, received = remote.requests[0]
    assert received == body
    public = actors.local_key(user_id).public_pem
    lowered = {k.lower(): v for k, v in headers.items()}
    assert fedsign.verify_request("POST", path, lowered, body, lambda key: public) == actors.key_id(
        user_id
    )


def test_answer_over_the_cap_is_refused(ctx, remote, open_fence, app):
    app.config["FEDERATION_FETCH_MAX_BYTES"] = 2048
    remote.json("/big", {"x": "y" * 5000})
    with pytest.raises(fedfetch.FetchError, match="too large"):
        fedfetch.fetch_json(remote.base + "/big")
    with pytest.raises(fedfetch.FetchError, match="too large"):
        fedfetch.fetch_bytes(remote.base + "/big", max_bytes=100)


def test_redirect_to_an_unsafe_target_is_refused(ctx, remote, open_fence, app):
    remote.routes["/go"] = (302, {"Location": "https://169.254.169.254/"}, b"")
    app.config["FEDERATION_ALLOW_PRIVATE"] = False
    with pytest.raises(fedfetch.UnsafeURL):
        fedfetch.fetch_json(remote.base + "/go")


def test_redirect_to_a_safe_target_is_followed(ctx, remote, open_fence):
    remote.routes["/go"] = (302, {"Location": "/there"}, b"")
    remote.json("/there", {"ok": True})
    assert fedfetch.fetch_json(remote.base + "/go") == {"ok": True}


@pytest.mark.parametrize("body", [b"[1, 2]", b"not json", b"[" * 100000])
def test_unusable_json_is_a_fetch_error(ctx, remote, open_fence, body):
    remote.routes["/bad"] = (200, {}, body)
    with pytest.raises(fedfetch.FetchError):
        fedfetch.fetch_json(remote.base + "/bad")


def test_error_status_is_a_fetch_error(ctx, remote, open_fence):
    with pytest.raises(fedfetch.FetchError, match="404"):
        fedfetch.fetch_json(remote.base + "/missing")


def test_remote_account_by_webfinger(ctx, remote, open_fence):
    document = actor_document(remote.base)
    remote.json("/users/ann", document)
    webfinger = {
        "subject": f"acct:ann@{remote.host}",
        "links": [{"rel": "self", "type": "application/activity+json", "href": document["id"]}],
    }
    remote.json(f"/.well-known/webfinger?resource=acct:ann@{remote.host}", webfinger)
    user = fedfetch.remote_account(f"@ann@{remote.host}")
    assert user.username == f"ann@{remote.host}"
    assert user.domain == remote.host and user.email is None and user.password_hash is None
    assert user.about_me == "Hi me"
    remote_actor = actors.remote_actor(user)
    assert remote_actor.shared_inbox == f"{remote.base}/inbox"
    assert "<script>" not in remote_actor.summary_html
    assert 'rel="nofollow noopener"' in remote_actor.summary_html
    assert remote_actor.display_name == "Ann Example"
    assert actors.actor_id(user) == document["id"]
    # Known and fresh: no second fetch.
    count = len(remote.requests)
    assert fedfetch.remote_account(f"ann@{remote.host}").id == user.id
    assert fedfetch.remote_account(document["id"]).id == user.id
    assert len(remote.requests) == count


def test_actor_claiming_another_server_is_refused(ctx, remote, open_fence):
    document = actor_document("https://elsewhere.example")
    remote.json("/users/ann", document)
    with pytest.raises(fedfetch.FetchError, match="another server"):
        fedfetch.remote_account(remote.base + "/users/ann")
    assert actors.remote_by_actor_url(document["id"]) is None


def test_actor_with_inbox_elsewhere_is_refused(ctx, remote, open_fence):
    document = actor_document(remote.base)
    document["inbox"] = "https://victim.example/inbox"
    remote.json("/users/ann", document)
    with pytest.raises(fedfetch.FetchError, match="inbox"):
        fedfetch.remote_account(remote.base + "/users/ann")


def test_handle_that_is_not_one(ctx):
    with pytest.raises(fedfetch.FetchError):
        fedfetch.remote_account("just words")


def test_actor_taking_another_accounts_name_is_a_fetch_error(ctx):
    ann = actor_document("https://remote.example", "ann")
    fedfetch.store_actor(ann, ann["id"])
    bea = actor_document("https://remote.example", "bea")
    fedfetch.store_actor(bea, bea["id"])
    renamed = {**bea, "preferredUsername": "ann"}
    with pytest.raises(fedfetch.FetchError, match="clashes"):
        fedfetch.store_actor(renamed, bea["id"])
    assert actors.remote_by_actor_url(bea["id"]).user.username == "bea@remote.example"
