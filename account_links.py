"""The signed links mailed to a user: a password reset, and the confirmation of a new
e-mail address. Each works once and for a while; nothing about them is stored."""

import hashlib

from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer

from database import db
from models import User, normalize_email

RESET_TOKEN_MAX_AGE = 3600  # seconds
EMAIL_CHANGE_TOKEN_MAX_AGE = 24 * 3600  # seconds


def _reset_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="reset-password")


def _email_change_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="change-email")


def _password_fingerprint(user: User) -> str:
    # Part of the reset token: once the password changes, old tokens stop matching.
    return hashlib.sha256((user.password_hash or "").encode()).hexdigest()[:16]


def reset_password_token(user: User) -> str:
    """A signed link token that lets `user` set a new password, until they do."""
    return _reset_serializer().dumps({"id": user.id, "pw": _password_fingerprint(user)})


def user_from_reset_token(token: str) -> User | None:
    """The user a valid, unexpired, unused reset token belongs to, else None."""
    try:
        data = _reset_serializer().loads(token, max_age=RESET_TOKEN_MAX_AGE)
        user = db.session.get(User, int(data["id"]))
    except (BadSignature, KeyError, TypeError, ValueError):
        return None
    if user is None or data.get("pw") != _password_fingerprint(user):
        return None
    return user


def email_change_token(user: User, new_email: str) -> str:
    """A signed link token that sets `new_email` once opened (see `confirm_email_change`).

    It names the current address too, so it works once: after the change it no longer
    matches."""
    data = {"id": user.id, "old": user.email, "new": normalize_email(new_email)}
    return _email_change_serializer().dumps(data)


def email_change_from_token(token: str) -> tuple[User | None, str]:
    """The user and new address a valid, unexpired, unused token names; (None, "") else."""
    try:
        data = _email_change_serializer().loads(token, max_age=EMAIL_CHANGE_TOKEN_MAX_AGE)
        user = db.session.get(User, int(data["id"]))
        new_email = str(data["new"])
    except (BadSignature, KeyError, TypeError, ValueError, OverflowError):
        return None, ""
    if user is None or data.get("old") != user.email:
        return None, ""
    return user, new_email
