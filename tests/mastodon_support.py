"""Helpers for the Mastodon client API's tests: apps and tokens made straight in the
database (no slow password check), and PKCE pairs."""

import base64
import hashlib
import secrets

from database import db
from models import User
from oauth_store import OAuthApp, OAuthToken

OOB = "urn:ietf:wg:oauth:2.0:oob"


def make_app(app, scopes="read write follow push", redirect_uris=(OOB,), name="Test app"):
    """An app registered in the database; returns (client_id, client_secret)."""
    with app.app_context():
        row, secret = OAuthApp.register(name, list(redirect_uris), scopes, None)
        db.session.commit()
        return row.client_id, secret


def make_token(app, user_id, scope="read write follow push"):
    """A bearer token for the user (None: for the app alone) with `scope`."""
    with app.app_context():
        row, _secret = OAuthApp.register("Token app", [OOB], "read write follow push", None)
        token = secrets.token_urlsafe(32)
        user = db.session.get(User, user_id) if user_id else None
        OAuthToken.issue(row, user, {"access_token": token, "scope": scope})
        db.session.commit()
        return token


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def pkce_pair():
    """(code_verifier, S256 code_challenge)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
