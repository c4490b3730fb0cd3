"""The OAuth 2 side of the Mastodon client API: registered apps, authorization codes and
access tokens, as rows, and the rules on them (scopes, revocation).

Only hashes of the secrets are kept (client secrets, codes and tokens): a leaked database
holds nothing that signs anyone in. The grant logic itself is Authlib's (oauth.py); these
classes give it what its mixins ask for.
"""

import secrets
from datetime import datetime, timedelta
from typing import Any, Optional

import sqlalchemy as sa
import sqlalchemy.orm as so
from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin

from database import Model, db, utcnow
from models import User, hash_api_token, sessions_ended

# The scopes a token may carry: the four top-level ones and the granular ones under each.
GRANULAR = {
    "read": [
        "accounts",
        "blocks",
        "bookmarks",
        "favourites",
        "filters",
        "follows",
        "lists",
        "mutes",
        "notifications",
        "search",
        "statuses",
    ],
    "write": [
        "accounts",
        "blocks",
        "bookmarks",
        "conversations",
        "favourites",
        "filters",
        "follows",
        "lists",
        "media",
        "mutes",
        "notifications",
        "reports",
        "statuses",
    ],
}
# `follow` is the old name for what read:follows, write:follows, blocks and mutes now are.
FOLLOW_SCOPE_COVERS = {
    "read:blocks",
    "write:blocks",
    "read:follows",
    "write:follows",
    "read:mutes",
    "write:mutes",
}
SCOPES = [
    "read",
    "write",
    "follow",
    "push",
    *(f"{top}:{name}" for top, names in GRANULAR.items() for name in names),
]
DEFAULT_SCOPE = "read"
OOB_REDIRECT = "urn:ietf:wg:oauth:2.0:oob"
CODE_LIFETIME = timedelta(minutes=10)
NAME_MAX = 200
URL_MAX = 2000
REDIRECTS_MAX = 4000


def scope_list(scope: str | None) -> list[str]:
    """The scopes of a space-separated string (Mastodon also accepts `+`), in order, once."""
    seen: list[str] = []
    for word in (scope or "").replace("+", " ").split():
        if word not in seen:
            seen.append(word)
    return seen


def unknown_scopes(scope: str | None) -> list[str]:
    return [word for word in scope_list(scope) if word not in SCOPES]


def scope_allows(held: str | None, wanted: str) -> bool:
    """Whether a token holding the scopes `held` may do what needs `wanted` (granular:
    `read` covers `read:statuses`; `follow` covers the follows, blocks and mutes)."""
    words = set(scope_list(held))
    top = wanted.split(":")[0]
    return (
        wanted in words
        or top in words
        or ("follow" in words and wanted in FOLLOW_SCOPE_COVERS)
        or (wanted == "follow" and FOLLOW_SCOPE_COVERS <= words)
    )


def within(asked: str | None, allowed: str | None) -> bool:
    """Whether every scope `asked` is one the app registered (`read` covers `read:x`)."""
    return all(scope_allows(allowed, word) for word in scope_list(asked))


class OAuthApp(Model, ClientMixin):
    """An app registered with `POST /api/v1/apps`; anyone may register one."""

    __tablename__ = "oauth_app"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    client_id: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    secret_hash: so.Mapped[str] = so.mapped_column(sa.String(64))
    name: so.Mapped[str] = so.mapped_column(sa.String(NAME_MAX))
    website: so.Mapped[str | None] = so.mapped_column(sa.String(URL_MAX))
    # One per line, as the app sent them (space- or newline-separated).
    redirect_uris: so.Mapped[str] = so.mapped_column(sa.String(REDIRECTS_MAX))
    scopes: so.Mapped[str] = so.mapped_column(sa.String(1000))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    @classmethod
    def register(
        cls, name: str, redirect_uris: list[str], scopes: str, website: str | None
    ) -> tuple["OAuthApp", str]:
        """A new app (added to the session) and its client secret, shown this once."""
        secret = secrets.token_urlsafe(32)
        app = cls(
            client_id=secrets.token_urlsafe(32),
            secret_hash=hash_api_token(secret),
            name=name,
            website=website or None,
            redirect_uris="\n".join(redirect_uris),
            scopes=" ".join(scope_list(scopes)) or DEFAULT_SCOPE,
        )
        db.session.add(app)
        db.session.flush()
        return app, secret

    @classmethod
    def by_client_id(cls, client_id: str | None) -> Optional["OAuthApp"]:
        if not client_id or len(client_id) > 64:
            return None
        return db.session.scalar(sa.select(cls).where(cls.client_id == client_id))

    @property
    def redirect_uri_list(self) -> list[str]:
        return self.redirect_uris.split("\n")

    # --- what Authlib asks of a client ---------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uri_list[0]

    def get_allowed_scope(self, scope: str) -> str:
        """The scopes asked for (the app's own when none); the grants refuse others first."""
        if not scope:
            return self.scopes
        return " ".join(scope_list(scope))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uri_list

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(self.secret_hash, hash_api_token(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        # Apps send their secret in the body (Mastodon.py, toot) or as HTTP Basic.
        return method in ("client_secret_post", "client_secret_basic")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "password", "client_credentials")


class OAuthCode(Model, AuthorizationCodeMixin):
    """An authorization code between the Approve button and the app's token request."""

    __tablename__ = "oauth_code"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    code_hash: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    app_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("oauth_app.id", ondelete="CASCADE"), index=True
    )
    user_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    redirect_uri: so.Mapped[str] = so.mapped_column(sa.String(URL_MAX))
    scope: so.Mapped[str] = so.mapped_column(sa.String(1000))
    code_challenge: so.Mapped[str | None] = so.mapped_column(sa.String(128))
    code_challenge_method: so.Mapped[str | None] = so.mapped_column(sa.String(10))
    expires_at: so.Mapped[datetime]

    user: so.Mapped[User] = so.relationship()

    @classmethod
    def find(cls, code: str, app: OAuthApp) -> Optional["OAuthCode"]:
        query = sa.select(cls).where(
            cls.code_hash == hash_api_token(code), cls.app_id == app.id, cls.expires_at > utcnow()
        )
        return db.session.scalar(query)

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


class OAuthToken(Model, TokenMixin):
    """An access token of an app, for a user (or for the app alone: client_credentials)."""

    __tablename__ = "oauth_token"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    token_hash: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    app_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("oauth_app.id", ondelete="CASCADE"), index=True
    )
    user_id: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    scope: so.Mapped[str] = so.mapped_column(sa.String(1000))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    app: so.Mapped[OAuthApp] = so.relationship()
    user: so.Mapped[User | None] = so.relationship()

    @classmethod
    def issue(cls, app: OAuthApp, user: User | None, token: dict[str, Any]) -> "OAuthToken":
        """Keep the hash of the token Authlib generated (the caller commits)."""
        row = cls(
            token_hash=hash_api_token(token["access_token"]),
            app_id=app.id,
            user_id=user.id if user else None,
            scope=token.get("scope") or DEFAULT_SCOPE,
        )
        db.session.add(row)
        return row

    @classmethod
    def find(cls, token: str) -> Optional["OAuthToken"]:
        """The token's row, unless its user is disabled."""
        query = (
            sa.select(cls)
            .outerjoin(cls.user)
            .where(
                cls.token_hash == hash_api_token(token),
                sa.or_(cls.user_id.is_(None), User.disabled.is_(False)),
            )
        )
        return db.session.scalar(query)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return 0

    def is_expired(self) -> bool:
        return False  # as Mastodon's: valid until revoked

    def is_revoked(self) -> bool:
        return False  # a revoked token is deleted

    def get_user(self) -> User | None:
        return self.user

    def get_client(self) -> OAuthApp:
        return self.app

    def check_client(self, client: ClientMixin) -> bool:
        return client.get_client_id() == self.app.client_id


def authorized_apps(user: User) -> list[tuple[OAuthApp, datetime, str]]:
    """The apps holding a token for `user`: each with its first token's date and scopes."""
    query = (
        sa.select(OAuthApp, sa.func.min(OAuthToken.created_at), sa.func.max(OAuthToken.scope))
        .join(OAuthToken, OAuthToken.app_id == OAuthApp.id)
        .where(OAuthToken.user_id == user.id)
        .group_by(OAuthApp.id)
        .order_by(OAuthApp.name, OAuthApp.id)
    )
    return [(app, since, scope) for app, since, scope in db.session.execute(query)]


def revoke_app(user: User, app_id: int) -> int:
    """Delete every token and code `user` gave the app; how many tokens (caller commits)."""
    db.session.execute(
        sa.delete(OAuthCode).where(OAuthCode.user_id == user.id, OAuthCode.app_id == app_id)
    )
    statement = sa.delete(OAuthToken).where(
        OAuthToken.user_id == user.id, OAuthToken.app_id == app_id
    )
    return db.session.execute(statement).rowcount  # type: ignore[attr-defined]


@sessions_ended.connect
def revoke_all(user: User) -> None:
    """Signing out everywhere (a new password, a disabled account) ends every app's access."""
    db.session.execute(sa.delete(OAuthCode).where(OAuthCode.user_id == user.id))
    db.session.execute(sa.delete(OAuthToken).where(OAuthToken.user_id == user.id))
