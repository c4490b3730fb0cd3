"""Who is asking, for the JSON API: bearer tokens and HTTP Basic credentials (for a token),
checked as each endpoint's `route(...)` declared, before its models see the request; and the
rate limits' 429s."""

from collections.abc import Callable
from typing import Any

from flask import Response, g, request
from flask_babel import gettext as _
from werkzeug.datastructures import Authorization

import ratelimit
from api_contract import ENDPOINT_AUTH, JSON_BODIES, REALM, bp
from api_errors import api_abort, error_response, json_object
from database import db
from head_check import HEAD_CHECK, go_on
from models import ApiToken, User

# --- authentication -----------------------------------------------------------------


def unauthorized(scheme: str, message: str) -> Response:
    return error_response(401, message, {"WWW-Authenticate": f'{scheme} realm="{REALM}"'})


def token_user() -> User:
    """The user whose bearer token authenticated this request."""
    return g.api_token.user


def _check_bearer_token(auth: Authorization | None) -> str | None:
    """A valid, unexpired bearer token: its row goes to `g.api_token`."""
    if auth is None or auth.type != "bearer" or not auth.token:
        return _("Send a token: 'Authorization: Bearer <token>'.")
    token = ApiToken.find(auth.token)
    if token is None:
        return _("The token is invalid or has expired.")
    g.api_token = token
    if token.user.seen_now():
        db.session.commit()
    return None


def _check_basic_credentials(auth: Authorization | None) -> str | None:
    """A username and password (rate limited per client IP and username): `g.basic_user`."""
    if auth is None or auth.type != "basic" or not auth.username:
        return _("Send your username and password with HTTP Basic auth.")
    enforce_token_rate_limit(auth.username)
    user = User.authenticate(auth.username, auth.password or "")
    if user is None:
        return _("Invalid username or password.")
    g.basic_user = user
    return None


# Per scheme: its name in the WWW-Authenticate header, and its check, which returns None
# or why it refused.
AUTH_SCHEMES: dict[str, tuple[str, Callable[[Any], str | None]]] = {
    "token": ("Bearer", _check_bearer_token),
    "basic": ("Basic", _check_basic_credentials),
}


@bp.before_request
def check_declared_auth_and_body() -> Response | None:
    """What `route` declared, before the models see the request: the credentials (a 401
    comes first), then a JSON object as the body."""
    scheme = ENDPOINT_AUTH.get(request.endpoint or "")
    if scheme:
        name, check = AUTH_SCHEMES[scheme]
        refusal = check(request.authorization)
        if refusal:
            return unauthorized(name, refusal)
    if request.environ.get(HEAD_CHECK):
        return go_on()  # credentials checked: the web server may read the body
    if request.endpoint in JSON_BODIES:
        json_object()
    return None


def enforce_token_rate_limit(username: str) -> None:
    """429 with Retry-After when this client address, or this address for this username,
    asked too often. Never per username alone: a flood from elsewhere must not lock the
    owner out."""
    refuse_if_limited(ratelimit.api_token(username), "token requests")


def refuse_if_limited(retry_after: int, what: str) -> None:
    """A 429 with Retry-After when a rate limit (`ratelimit.*`) refused."""
    if retry_after:
        api_abort(
            429,
            ratelimit.refusal(what, retry_after),
            {"Retry-After": str(retry_after)},
        )
