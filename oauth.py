"""OAuth 2 for Mastodon apps, as Mastodon does it: the authorize page, the token and
revoke endpoints, the server metadata, and "revoke" on /settings.

The grants are Authlib's (its Flask OAuth2 server): authorization code with PKCE,
client credentials and password. Authlib rather than oauthlib: oauthlib is the protocol
core alone and its Flask glue (Flask-OAuthlib) is unmaintained, while Authlib ships the
Flask server, the grants, PKCE, revocation and the bearer-token resource protector in one
maintained package; we give it our rows (oauth_store.py) and nothing else.
"""

from typing import Any
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa
from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Request
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import OAuth2Payload, grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidScopeError
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from flask import Blueprint, Flask, Response, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required
from werkzeug.datastructures import MultiDict

import ratelimit
from database import db, execute_dml, utcnow
from forms import EmptyForm
from models import User, hash_api_token
from oauth_store import (
    CODE_LIFETIME,
    OOB_REDIRECT,
    SCOPES,
    OAuthApp,
    OAuthCode,
    OAuthToken,
    revoke_app,
    scope_allows,
    scope_list,
    unknown_scopes,
    within,
)
from web import CONTENT_SECURITY_POLICY, allow_any_origin, error_page, redirect_with

bp = Blueprint("oauth", __name__)

# The longest value of a field Authlib is given: nothing legitimate comes near it.
FIELD_MAX = 4000


def request_fields() -> MultiDict[str, str]:
    """The query, the form and a JSON object's string fields, as one: Mastodon.py and toot
    send forms, masto and megalodon JSON."""
    fields: MultiDict[str, str] = MultiDict(request.args)
    fields.update(request.form)
    if request.is_json:
        try:
            data = request.get_json(silent=True)
        except RecursionError:  # nested too deeply: no fields, and Authlib says what is missing
            data = None
        if isinstance(data, dict):
            for name, value in data.items():
                if isinstance(value, str | int) and not isinstance(value, bool):
                    fields[name] = str(value)
    for name, value in list(fields.items(multi=True)):
        if len(value) > FIELD_MAX or not is_text(value):
            fields.poplist(name)
    return fields


def is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class FieldsPayload(OAuth2Payload):
    def __init__(self, fields: MultiDict[str, str]):
        self._fields = fields

    @property
    def data(self) -> MultiDict[str, str]:
        return self._fields

    @property
    def datalist(self) -> dict[str, list[str]]:
        return {name: self._fields.getlist(name) for name in self._fields}


class FieldsRequest(FlaskOAuth2Request):
    """Authlib's view of the request, reading `request_fields()`."""

    def __init__(self) -> None:
        super().__init__(request)
        self._fields = request_fields()
        self.payload = FieldsPayload(self._fields)

    @property
    def form(self) -> MultiDict[str, str]:
        return self._fields


class Server(AuthorizationServer):
    def create_oauth2_request(self, _request: Any) -> FieldsRequest:
        return FieldsRequest()


class TooManyAttempts(OAuth2Error):
    error = "too_many_requests"
    status_code = 429

    def __init__(self, retry_after: int):
        super().__init__(ratelimit.refusal("sign-in attempts", retry_after))
        self.retry_after = retry_after

    def get_headers(self) -> list[tuple[str, str]]:
        return [*super().get_headers(), ("Retry-After", str(self.retry_after))]


class AppScopes:
    """Only scopes we know, and only those the app registered."""

    request: Any

    def validate_requested_scope(self) -> None:
        scope = self.request.payload.scope
        if unknown_scopes(scope) or not within(scope, self.request.client.scopes):
            raise InvalidScopeError()


class AuthorizationCodeGrant(AppScopes, grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def save_authorization_code(self, code: str, request: Any) -> None:
        payload = request.payload
        db.session.add(
            OAuthCode(
                code_hash=hash_api_token(code),
                app_id=request.client.id,
                user_id=request.user.id,
                redirect_uri=payload.redirect_uri or request.client.get_default_redirect_uri(),
                scope=request.scope,
                code_challenge=payload.data.get("code_challenge"),
                code_challenge_method=payload.data.get("code_challenge_method"),
                expires_at=utcnow() + CODE_LIFETIME,
            )
        )

    def query_authorization_code(self, code: str, client: OAuthApp) -> OAuthCode | None:
        return OAuthCode.find(code, client)

    def delete_authorization_code(self, authorization_code: OAuthCode) -> None:
        # Exchanges of one code racing each other have all read it: only the one whose
        # DELETE removes the row keeps its token (the others' transactions are undone).
        spend = sa.delete(OAuthCode).where(OAuthCode.id == authorization_code.id)
        if execute_dml(spend).rowcount != 1:
            raise InvalidGrantError("The authorization code has been used already.")

    def authenticate_user(self, authorization_code: OAuthCode) -> User | None:
        user = authorization_code.user
        return user if user.is_active else None


class PasswordGrant(AppScopes, grants.ResourceOwnerPasswordCredentialsGrant):
    """What `toot login_cli` and Mastodon.py's `log_in` use; throttled as the sign-in form."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def authenticate_user(self, username: str, password: str) -> User | None:
        retry_after = ratelimit.sign_in(username)
        if retry_after:
            raise TooManyAttempts(retry_after)
        # Apps name the account by its e-mail address (Mastodon signs in with it) or name.
        user = User.by_email(username) if "@" in username else None
        name = user.username if user else username
        return User.authenticate(name, password)


class ClientCredentialsGrant(AppScopes, grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> OAuthToken | None:
        return OAuthToken.find(token_string)

    def revoke_token(self, token: OAuthToken, request: Any) -> None:
        db.session.delete(token)


class S256Only(CodeChallenge):
    """PKCE as Mastodon has it: S256 only (the `plain` method would show the verifier)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]


class TokenValidator(BearerTokenValidator):
    def authenticate_token(self, token_string: str) -> OAuthToken | None:
        return OAuthToken.find(token_string)

    @staticmethod
    def scope_insufficient(token_scopes: str, required_scopes: list[str] | None) -> bool:
        return any(not scope_allows(token_scopes, wanted) for wanted in required_scopes or [])


def save_token(token: dict[str, Any], request: Any) -> None:
    OAuthToken.issue(request.client, request.user, token)


server = Server(query_client=OAuthApp.by_client_id, save_token=save_token)
require_oauth = ResourceProtector()
require_oauth.register_token_validator(TokenValidator())


def init_app(app: Flask) -> None:
    """Mount the OAuth endpoints; the token and revoke endpoints take no CSRF token (apps
    authenticate with their client secret)."""
    app.config.setdefault("OAUTH2_SCOPES_SUPPORTED", SCOPES)
    # Mastodon's tokens last until revoked; Authlib still names a lifetime in its answer.
    app.config.setdefault("OAUTH2_TOKEN_EXPIRES_IN", {})
    server.init_app(app)
    server.register_grant(AuthorizationCodeGrant, [S256Only(required=False)])
    server.register_grant(PasswordGrant)
    server.register_grant(ClientCredentialsGrant)
    server.register_endpoint(Revocation)
    app.register_blueprint(bp)
    csrf = app.extensions["csrf"]
    for view in (issue_token, revoke_token, server_metadata):
        csrf.exempt(view)


@bp.after_request
def open_to_web_apps(response: Response) -> Response:
    """Web apps exchange codes from their own origin; the page itself stays same-origin."""
    if request.endpoint != "oauth.authorize":
        allow_any_origin(response)
    return response


# --- the endpoints -------------------------------------------------------------------


@bp.route("/oauth/token", methods=["POST"], strict_slashes=False)
def issue_token() -> Response:
    response = server.create_token_response()
    # The token and the spent code, in one transaction: a code works once. A refusal
    # keeps nothing (a token of a code another request spent first).
    if response.status_code == 200:
        db.session.commit()
    else:
        db.session.rollback()
    return with_created_at(response)


def with_created_at(response: Response) -> Response:
    """Mastodon's token answer also says when it was made; the lifetime it does not name
    (its tokens last until revoked)."""
    payload = response.get_json(silent=True)
    if response.status_code != 200 or not isinstance(payload, dict):
        return response
    payload.pop("expires_in", None)
    payload["created_at"] = int(utcnow().timestamp())
    answer = jsonify(payload)
    answer.headers["Cache-Control"] = "no-store"
    return answer


@bp.route("/oauth/revoke", methods=["POST"], strict_slashes=False)
def revoke_token() -> Response:
    response: Response = server.create_endpoint_response(RevocationEndpoint.ENDPOINT_NAME)
    db.session.commit()
    return response


@bp.route("/.well-known/oauth-authorization-server")
def server_metadata() -> Response:
    """RFC 8414 metadata, as Mastodon 4.3 publishes it, at the address the app used (as the
    API's own links are): apps follow these URLs."""
    root = request.host_url.rstrip("/")
    return jsonify(
        {
            "issuer": root + "/",
            "authorization_endpoint": f"{root}/oauth/authorize",
            "token_endpoint": f"{root}/oauth/token",
            "revocation_endpoint": f"{root}/oauth/revoke",
            "app_registration_endpoint": f"{root}/api/v1/apps",
            "scopes_supported": SCOPES,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "password", "client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "service_documentation": f"{root}/api/v1/microblog/openapi.json",
        }
    )


@bp.route("/oauth/authorize", methods=["GET", "POST"], strict_slashes=False)
@login_required
def authorize() -> ResponseReturnValue:
    """The signed-in user approves or denies an app; a POST with the CSRF token decides."""
    user = current_user._get_current_object()
    try:
        grant = server.get_consent_grant(end_user=user)
    except OAuth2Error as error:
        # Never redirect on a bad client or address: only a page saying what is wrong.
        return error_page(400, _("This app's sign-in request is invalid: %(why)s", why=error))
    form = EmptyForm()
    redirect_uri = grant.request.payload.redirect_uri or grant.client.get_default_redirect_uri()
    if not form.validate_on_submit():
        return consent_page(grant, form, redirect_uri)
    approved = "approve" in request.form
    response = server.create_authorization_response(
        grant=grant, grant_user=user if approved else None
    )
    db.session.commit()
    if redirect_uri == OOB_REDIRECT:
        return code_page(grant.client, response, approved)
    return allow_form_redirect(response, redirect_uri)


def consent_page(grant: Any, form: EmptyForm, redirect_uri: str) -> Response:
    scopes = scope_list(grant.request.scope)
    page = render_template(
        "oauth_authorize.html",
        title=_("Authorize %(name)s", name=grant.client.name),
        app=grant.client,
        scopes=scopes,
        form=form,
        redirect_uri=redirect_uri,
        oob=redirect_uri == OOB_REDIRECT,
    )
    return allow_form_redirect(Response(page), redirect_uri)


def allow_form_redirect(response: Response, redirect_uri: str) -> Response:
    """The page's forms may lead on to the app's address (the browser holds a redirect
    after a form to the page's `form-action`)."""
    parts = urlsplit(redirect_uri)
    if redirect_uri == OOB_REDIRECT or not parts.scheme:
        return response
    source = f"{parts.scheme}:" if parts.scheme not in ("http", "https") else None
    source = source or f"{parts.scheme}://{parts.netloc}"
    if any(ch in source for ch in " ;,'\"\r\n"):
        return response
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.replace(
        "form-action 'self'", f"form-action 'self' {source}"
    )
    return response


def code_page(app: OAuthApp, response: Response, approved: bool) -> ResponseReturnValue:
    """For apps without an address to come back to: the code to copy, or the refusal."""
    location = response.headers.get("Location", "")
    code = parse_qs(urlsplit(location).query).get("code", [None])[0]
    if not approved or not code:
        return redirect_with("info", _("You denied %(name)s access.", name=app.name), "posts.index")
    return render_template("oauth_code.html", title=_("Authorization code"), app=app, code=code)


@bp.route("/settings/apps/<row_id:app_id>/revoke", methods=["POST"])
@login_required
def revoke_app_access(app_id: int) -> ResponseReturnValue:
    """The "Revoke" button of an authorized app on /settings."""
    form = EmptyForm()
    if not form.validate_on_submit():
        return error_page(400)
    revoked = revoke_app(current_user._get_current_object(), app_id)
    db.session.commit()
    if not revoked:
        return error_page(404)
    return redirect_with("info", _("The app no longer has access."), "accounts.settings")
