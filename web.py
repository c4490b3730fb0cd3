"""Page helpers every route module shares: error pages, paging, redirects, security headers."""

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeGuard, TypeVar
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import (
    Flask,
    Response,
    abort,
    current_app,
    flash,
    has_request_context,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask import Request as FlaskRequest
from flask.globals import request_ctx
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import LoginManager, current_user
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import IntegerConverter, Map
from werkzeug.wrappers import Response as WerkzeugResponse

import api
import ratelimit
from database import MAX_ROW_ID, Page, db
from head_check import HEAD_CHECK, go_on

P = ParamSpec("P")
R = TypeVar("R")

# The endpoints that take an uploaded file larger than any other request may be, and the
# setting that limits it.
UPLOAD_ENDPOINTS = {
    "task_pages.import_posts": "MICROBLOG_IMPORT_MAX_BYTES",
    "api.create_task": "MICROBLOG_IMPORT_MAX_BYTES",
    "people.edit_profile": "MICROBLOG_AVATAR_MAX_BYTES",
    "api.upload_avatar": "MICROBLOG_AVATAR_MAX_BYTES",
    "mastodon.update_credentials": "MICROBLOG_AVATAR_MAX_BYTES",
    "mastodon.start_import": "MICROBLOG_IMPORT_MAX_BYTES",
}


# Those of them that also take the file itself as the body (not in a form).
RAW_UPLOAD_ENDPOINTS = {"api.upload_avatar"}


# The blueprints whose own hook checks a token before the body is read (the JSON API, the
# Mastodon client API).
TOKEN_BLUEPRINTS = {"api", "mastodon"}


# Those of them on pages for signed-in users (the API's check their token before reading).
SIGNED_IN_UPLOAD_ENDPOINTS = {"task_pages.import_posts", "people.edit_profile"}


# Room for the other fields of a form that carries a file.
FORM_FIELDS_BYTES = 64 * 1024


# No script but our own files (no inline code), no framing, forms and fetches to this site
# only. Styles may be inline (the progress bar's width); Bootstrap's icons are data: images;
# avatars come from this site (and from Gravatar only when MICROBLOG_GRAVATAR is on).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)


SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Links to other sites do not carry our URLs (a reset link's token, say).
    "Referrer-Policy": "same-origin",
}


# What each error page says; the status line's reason is the heading.
ERROR_REASONS = {
    400: _l("The request could not be understood."),
    403: _l("You are not allowed to do that."),
    404: _l("Sorry, that page does not exist (or is not yours to see)."),
    405: _l("This address does not accept that kind of request."),
    413: _l("The request is too large."),
    500: _l("An unexpected error occurred. It has been logged. Please try again."),
}


# The status line as a heading, in the reader's language.
ERROR_HEADINGS = {
    400: _l("Bad request"),
    401: _l("Unauthorized"),
    403: _l("Forbidden"),
    404: _l("Not found"),
    405: _l("Method not allowed"),
    409: _l("Conflict"),
    413: _l("Request entity too large"),
    429: _l("Too many requests"),
    500: _l("Internal server error"),
    503: _l("Service unavailable"),
}


# A whole number as the database takes it: any 18 digits fit in SQLite's 64-bit integers
# (a longer number would overflow them: a 500). ASCII only, no spaces nor underscores,
# unlike int(), which would also take "٣", " 7" or "1_000".
WHOLE_NUMBER = re.compile(r"-?[0-9]{1,18}")


class UploadRequest(FlaskRequest):
    """A request limited to MAX_CONTENT_LENGTH, except a file upload to an endpoint that
    takes one (UPLOAD_ENDPOINTS). Decided before anything reads the body (the CSRF check
    reads the form first)."""

    @property
    def max_content_length(self) -> int | None:
        rule = self.url_rule
        if (
            current_app
            and rule is not None
            and rule.endpoint in UPLOAD_ENDPOINTS
            and (self.mimetype == "multipart/form-data" or rule.endpoint in RAW_UPLOAD_ENDPOINTS)
        ):
            return current_app.config[UPLOAD_ENDPOINTS[rule.endpoint]] + FORM_FIELDS_BYTES
        return super().max_content_length

    @max_content_length.setter
    def max_content_length(self, value: int | None) -> None:
        self._max_content_length = value


class RowIdConverter(IntegerConverter):
    """`<row_id:name>`: a row's id in a URL. A larger number matches no route (a 404): no
    row has it, and the database's integers would overflow (a 500)."""

    # `kwargs` are the rule's own arguments (`<row_id(signed=True):id>`), of whatever type
    # werkzeug parsed them to.
    def __init__(self, url_map: Map, **kwargs: Any) -> None:
        super().__init__(url_map, max=MAX_ROW_ID, **kwargs)


def refuse_anonymous_upload() -> ResponseReturnValue | None:
    """Send someone not signed in who posts to an upload page to sign in, without reading
    the body: the CSRF check would read (and spool to disk) an upload of up to
    MICROBLOG_IMPORT_MAX_BYTES from anyone before the view's own sign-in check. Also the
    app's part of the web server's head check (HEAD_CHECK)."""
    head_check = request.environ.get(HEAD_CHECK)
    if head_check:
        limit = request.max_content_length
        if limit is not None and (request.content_length or 0) > limit:
            abort(413)
    if request.endpoint in SIGNED_IN_UPLOAD_ENDPOINTS and not current_user.is_authenticated:
        return login_manager().unauthorized()
    if head_check and request.blueprint not in TOKEN_BLUEPRINTS:
        return go_on()  # the APIs' own hooks check the credentials first
    return None


def fixed_url(endpoint: str, **values: Any) -> str:
    """`url_for` for a URL that stays the same while the app runs (a static file, whose hash
    is read once per process, or a page without arguments): a page's frame asks for some
    thirty of them, and `url_for` costs tens of microseconds a call."""
    return made_once(
        ("url", endpoint, *sorted(values.items())), lambda: url_for(endpoint, **values)
    )


def made_once(key: tuple[object, ...], make: Callable[[], R]) -> R:
    """What `make` returns, made once per app (and path prefix) and then reused: for the
    parts of a page that stay the same while the app runs."""
    known: dict[tuple[object, ...], Any] = current_app.extensions.setdefault("made_once", {})
    key = (request.script_root if has_request_context() else "", *key)
    if key not in known:
        known[key] = make()
    return known[key]


def add_security_headers(response: Response) -> Response:
    """Every response, pages and API alike, carries the browser protections."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if current_app.config["MICROBLOG_GRAVATAR"]:
        policy = response.headers["Content-Security-Policy"]
        response.headers["Content-Security-Policy"] = policy.replace(
            "img-src 'self' data:", "img-src 'self' data: https://www.gravatar.com"
        )
    return response


# Web apps (Elk, Phanpy) call the Mastodon API and the token endpoint from their own origin.
# Any origin may: those read no cookie, only the bearer token or secret the app holds, as
# Mastodon's do.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key",
    "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
    "Access-Control-Expose-Headers": "Link",
    "Access-Control-Max-Age": "3600",
}


def allow_any_origin(response: Response) -> Response:
    """Let scripts of any origin read `response` (endpoints authorised by tokens only)."""
    response.headers.update(CORS_HEADERS)
    return response


def error_heading(status: int) -> str:
    """The heading of the error page for `status`."""
    if status in ERROR_HEADINGS:
        return str(ERROR_HEADINGS[status])
    return HTTP_STATUS_CODES.get(status, "Error").capitalize()


def wants_json() -> bool:
    """True when the client prefers JSON to HTML (API clients such as HTTPie say so)."""
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def error_page(status: int, reason: str | None = None, **context: object) -> Response:
    """The one error page (HTML, or JSON for clients that ask for it)."""
    reason = str(reason or ERROR_REASONS.get(status) or HTTP_STATUS_CODES.get(status, "Error"))
    if wants_json():
        return api.error_response(status, reason)
    heading = context.pop("heading", None) or error_heading(status)
    page = render_template(
        "errors/error.html", title=heading, heading=heading, reason=reason, **context
    )
    return make_response(page, status)


def register_error_handlers(app: Flask) -> None:
    """Every web error renders `errors/error.html` (JSON when asked); /api has its own."""

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> HTTPException | Response:
        if request_ctx.url_adapter is None:
            return error  # a refused Host: no URL can be built for a page, werkzeug's will do
        response = error_page(error.code or 500, _custom_description(error))
        if "Allow" in error.get_response().headers:
            response.headers["Allow"] = error.get_response().headers["Allow"]
        return response

    @app.errorhandler(InternalServerError)
    def internal_error(_error: InternalServerError) -> Response:
        # Flask has already logged the traceback; drop the failed transaction.
        db.session.rollback()
        return error_page(500, heading=_("Something went wrong"))

    @app.errorhandler(CSRFError)
    def form_expired(_error: CSRFError) -> Response:
        # Nothing of the refused request is shown again, nor offered to send once more:
        # it may have come from another site's form, and one click on a "send again"
        # button carrying a fresh token would do what that site wanted. Only the blank
        # form of the page it was sent to, when that address is a page.
        adapter = request_ctx.url_adapter
        is_page = adapter is not None and adapter.test(request.path, method="GET")
        form_url = request.script_root + request.path if is_page else None
        return error_page(
            400,
            _("Your form expired (it was open too long, or you signed in or out meanwhile)."),
            heading=_("Your form expired"),
            form_expired=True,
            form_url=form_url,
        )

    @app.errorhandler(sa.exc.IntegrityError)
    def lost_race(_error: sa.exc.IntegrityError) -> Response:
        # Two requests claimed the same username or address at once; the forms' checks
        # passed for both, the unique index let one win.
        db.session.rollback()
        return error_page(409, _("That name or address was just taken. Please try another."))


def _custom_description(error: HTTPException) -> str | None:
    """A view's own message (`abort(404, "...")`), not werkzeug's generic text."""
    generic = type(error).description
    return error.description if error.description != generic else None


def anonymous_only(view: Callable[P, R]) -> Callable[P, R | WerkzeugResponse]:
    """Pages for signed-out visitors (sign in, register, reset): signed-in users go home."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | WerkzeugResponse:
        if current_user.is_authenticated:
            return redirect(url_for("posts.index"))
        return view(*args, **kwargs)

    return wrapper


def is_safe_next(target: str | None) -> TypeGuard[str]:
    """True for a path inside this site; rejects `//host`, `/\\host` and absolute URLs."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return False
    if any(ch in target for ch in "\\\r\n\t") or any(ord(ch) < 32 for ch in target):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def redirect_with(category: str, message: str, endpoint: str, **values: Any) -> WerkzeugResponse:
    """Flash `message` (a Bootstrap alert category) and redirect to `endpoint`."""
    flash(message, category)
    return redirect(url_for(endpoint, **values))


def page_number() -> int:
    """`?page=`: page 1 when missing or not a positive number; 404 past any page there
    can be (a huge OFFSET would overflow the database's integers)."""
    value = request.args.get("page", "")
    if not value.isdecimal() or not value.isascii():
        return 1
    if len(value) > 7 or int(value) > api.MAX_PAGE:
        abort(404, _("There is no page %(number)s.", number=value[:20]))
    return max(int(value), 1)


def int_arg(name: str, default: int) -> int:
    """The query argument `name` as a whole number, `default` when it is absent; 400 for
    anything else. Every page that reads a number from the query reads it here."""
    value = request.args.get(name)
    return default if value is None else whole_number(name, value)


def int_args(name: str) -> list[int]:
    """Each `name` of the query (`?size=32&size=64`) as a whole number; 400 for any other."""
    return [whole_number(name, value) for value in request.args.getlist(name)]


def whole_number(name: str, value: str) -> int:
    if not WHOLE_NUMBER.fullmatch(value):
        abort(400, _("'%(name)s' must be a whole number of at most 18 digits.", name=name))
    return int(value)


def paginate(query: sa.Select[Any]) -> Page:
    """The `?page=` page of `query`: one row more than shown tells whether there is a next."""
    per_page = current_app.config["POSTS_PER_PAGE"]
    number = page_number()
    rows = db.session.scalars(query.limit(per_page + 1).offset((number - 1) * per_page)).all()
    return Page(items=rows[:per_page], number=number, has_next=len(rows) > per_page)


def page_links(page: Page, endpoint: str, **kwargs: Any) -> tuple[str | None, str | None]:
    """URLs for the newer/older buttons, or None at either end."""
    # `page` last, so the URL reads `?q=word&page=2`.
    newer = url_for(endpoint, **kwargs, page=page.number - 1) if page.number > 1 else None
    older = url_for(endpoint, **kwargs, page=page.number + 1) if page.has_next else None
    return newer, older


def list_page(
    template: str,
    select: sa.Select[Any],
    endpoint: str,
    items: str,
    url_args: Mapping[str, Any] | None = None,
    **context: object,
) -> str:
    """Render `template` with the `?page=` page of `select` as `items` and its pager links."""
    page = paginate(select)
    newer, older = page_links(page, endpoint, **(url_args or {}))
    context[items] = page
    return render_template(template, newer_url=newer, older_url=older, **context)


def form_page(
    form: FlaskForm,
    title: str,
    heading: str | None = None,
    template: str = "form_page.html",
    status: int | None = None,
    **context: object,
) -> tuple[str, int]:
    """A page built around `form`: 400 when it was submitted and refused, else 200."""
    if status is None:
        status = 400 if form.is_submitted() else 200
    page = render_template(template, title=title, heading=heading, form=form, **context)
    return page, status


def too_many(page: Callable[[], ResponseReturnValue], retry_after: int, what: str) -> Response:
    """`page` (a view's answer) as a 429 saying how long to wait before trying `what` again."""
    flash(ratelimit.refusal(what, retry_after), "danger")
    response = make_response(page())
    response.status_code = 429
    response.headers["Retry-After"] = str(retry_after)
    return response


def human_size(size: int | None) -> str:
    """1536 → "1.5 KB"."""
    amount = float(size or 0)
    for unit in ("bytes", "KB", "MB", "GB"):
        if amount < 1024 or unit == "GB":
            return f"{int(amount)} {unit}" if unit == "bytes" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def safe_referrer() -> str:
    """Back to the page the button was on (a local `next`), else the task history."""
    target = request.args.get("next")
    return target if is_safe_next(target) else url_for("task_pages.tasks")


def login_manager() -> LoginManager:
    """The app's Flask-Login manager (made in microblog.py, which imports this module)."""
    return current_app.login_manager  # type: ignore[attr-defined]
