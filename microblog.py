"""The Microblog web app: `create_app()` and the routes."""

import functools
import logging
import re
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from logging.handlers import SMTPHandler
from pathlib import Path
from typing import TypeGuard
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    has_request_context,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask import Request as FlaskRequest
from flask.globals import request_ctx
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import refresh
from flask_bootstrap import Bootstrap5
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from flask_migrate import Migrate
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.middleware.proxy_fix import ProxyFix

import api
import cli
import config as settings
import i18n
import ratelimit
import search as search_module
import static_files
import translation
from avatars import AvatarError, generated_avatar_svg
from formatting import CardKit, linkify
from forms import (
    ChangeEmailForm,
    ChangePasswordForm,
    DeleteAccountForm,
    EditProfileForm,
    EmptyForm,
    ImportForm,
    LanguageForm,
    LoginForm,
    MarkReadForm,
    MessageForm,
    PostForm,
    RegistrationForm,
    ResetPasswordForm,
    ResetPasswordRequestForm,
)
from mailer import mail
from models import (
    MAX_ROW_ID,
    REGISTRATION_CLOSED,
    USERNAME_MAX,
    Message,
    Page,
    Post,
    Task,
    TaskStatus,
    User,
    db,
    isoformat_utc,
    notifications_payload,
    registration_open,
)
from tasks import (
    check_avatar,
    huey,
    live_consumers,
    seconds_since_last_heartbeat,
    send_avatar,
    send_email_change,
    send_export,
    send_password_reset,
    start_account_deletion,
    start_avatar,
    start_export,
    start_import,
)

log = logging.getLogger("microblog")

migrate = Migrate()
login = LoginManager()
login.login_view = "main.login"
login.login_message = _l("Please log in to access this page.")
csrf = CSRFProtect()
bootstrap = Bootstrap5()

bp = Blueprint("main", __name__)


# The endpoints that take an uploaded file larger than any other request may be, and the
# setting that limits it.
UPLOAD_ENDPOINTS = {
    "main.import_posts": "MICROBLOG_IMPORT_MAX_BYTES",
    "api.create_task": "MICROBLOG_IMPORT_MAX_BYTES",
    "main.edit_profile": "MICROBLOG_AVATAR_MAX_BYTES",
    "api.upload_avatar": "MICROBLOG_AVATAR_MAX_BYTES",
}
# Those of them that also take the file itself as the body (not in a form).
RAW_UPLOAD_ENDPOINTS = {"api.upload_avatar"}
# Room for the other fields of a form that carries a file.
FORM_FIELDS_BYTES = 64 * 1024


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


def create_app(config=None):
    """Build the app: defaults, then the environment (both from config.py), then `config`
    (tests)."""
    config = dict(config or {})
    # Every file we create (databases, exports, the secret key) must be 0600: set once,
    # here at startup, for the whole process.
    settings.use_private_files()
    app = Flask(__name__)
    app.request_class = UploadRequest
    data_dir = Path(config["DATA_DIR"]) if "DATA_DIR" in config else None
    app.config.from_mapping(settings.from_environment(data_dir))
    app.config.from_mapping(config)
    cookies = settings.cookie_security(app.config["SITE_URL"])
    app.config.from_mapping({key: value for key, value in cookies.items() if key not in config})
    if app.config["TRUSTED_PROXIES"]:
        # Believe the client address and scheme only from that many proxies in front.
        proxies = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]

    db.init_app(app)
    migrate.init_app(
        app,
        db,
        directory=str(settings.PROJECT_DIR / "migrations"),
        include_name=search_module.alembic_include_name,
    )
    login.init_app(app)
    mail.init_app(app)
    csrf.init_app(app)
    bootstrap.init_app(app)
    i18n.init_app(app)

    static_files.init_app(app)
    app.register_blueprint(bp)
    app.after_request(add_security_headers)
    api.init_app(app)  # /api: JSON, token auth, no CSRF
    # admin.py builds on this module's page helpers, so it is imported once they exist.
    import admin

    app.register_blueprint(admin.bp)  # /admin
    app.cli.add_command(search_module.reindex_command)
    cli.init_app(app)  # flask user …, backup, restore
    register_error_handlers(app)
    app.jinja_env.filters["isoformat_utc"] = isoformat_utc
    app.jinja_env.filters["human_size"] = human_size
    app.jinja_env.filters["linkify"] = linkify
    app.jinja_env.globals["TaskStatus"] = TaskStatus
    app.jinja_env.globals["registration_open"] = registration_open
    app.jinja_env.globals["card_kit"] = CardKit
    configure_logging(app)
    return app


def configure_logging(app):
    """Log to stderr; mail errors to ADMINS in production when mail is configured."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            stream=sys.stderr,
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    # Flask's logger is shared by every app of this name: replace, don't stack, the handler.
    for handler in [h for h in app.logger.handlers if isinstance(h, SMTPHandler)]:
        app.logger.removeHandler(handler)
    if app.debug or app.testing or not app.config["MAIL_SERVER"] or not app.config["ADMINS"]:
        return
    credentials = None
    if app.config["MAIL_USERNAME"]:
        credentials = (app.config["MAIL_USERNAME"], app.config["MAIL_PASSWORD"])
    handler = SMTPHandler(
        mailhost=(app.config["MAIL_SERVER"], app.config["MAIL_PORT"]),
        fromaddr=app.config["MAIL_DEFAULT_SENDER"],
        toaddrs=app.config["ADMINS"],
        subject="Microblog failure",
        credentials=credentials,
        secure=() if app.config["MAIL_USE_TLS"] else None,
    )
    handler.setLevel(logging.ERROR)
    handler.addFilter(OncePerInterval(ERROR_MAIL_INTERVAL))
    app.logger.addHandler(handler)


# The same error is mailed to the admins at most once in this many seconds (per process).
ERROR_MAIL_INTERVAL = 300


class OncePerInterval(logging.Filter):
    """Lets a record through once per `interval` seconds per distinct error: a flood of
    failing requests sends one mail, not one each.

    Kept in memory, not in the database: the database may be what is failing.
    """

    def __init__(self, interval: float):
        super().__init__()
        self.interval = interval
        self.last_sent: dict[tuple, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = self.error_key(record)
        now = time.monotonic()
        if now - self.last_sent.get(key, -self.interval) < self.interval:
            return False
        self.last_sent[key] = now
        return True

    @staticmethod
    def error_key(record: logging.LogRecord) -> tuple:
        """What makes two errors the same: the exception's type and where it was raised
        (else the log message's template and where it was logged)."""
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            traceback = error.__traceback__
            while traceback is not None and traceback.tb_next is not None:
                traceback = traceback.tb_next
            where = (
                (traceback.tb_frame.f_code.co_filename, traceback.tb_lineno) if traceback else ()
            )
            return (type(error).__name__, *where)
        return (str(record.msg), record.pathname, record.lineno)


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


def add_security_headers(response):
    """Every response, pages and API alike, carries the browser protections."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if current_app.config["MICROBLOG_GRAVATAR"]:
        policy = response.headers["Content-Security-Policy"]
        response.headers["Content-Security-Policy"] = policy.replace(
            "img-src 'self' data:", "img-src 'self' data: https://www.gravatar.com"
        )
    return response


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


def error_heading(status: int) -> str:
    """The heading of the error page for `status`."""
    if status in ERROR_HEADINGS:
        return str(ERROR_HEADINGS[status])
    return HTTP_STATUS_CODES.get(status, "Error").capitalize()


def wants_json() -> bool:
    """True when the client prefers JSON to HTML (API clients such as HTTPie say so)."""
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def error_page(status: int, reason: str | None = None, **context):
    """The one error page (HTML, or JSON for clients that ask for it)."""
    reason = str(reason or ERROR_REASONS.get(status) or HTTP_STATUS_CODES.get(status, "Error"))
    if wants_json():
        return api.error_response(status, reason)
    heading = context.pop("heading", None) or error_heading(status)
    page = render_template(
        "errors/error.html", title=heading, heading=heading, reason=reason, **context
    )
    return make_response(page, status)


def register_error_handlers(app):
    """Every web error renders `errors/error.html` (JSON when asked); /api has its own."""

    @app.errorhandler(HTTPException)
    def http_error(error):
        if request_ctx.url_adapter is None:
            return error  # a refused Host: no URL can be built for a page, werkzeug's will do
        response = error_page(error.code or 500, _custom_description(error))
        if "Allow" in error.get_response().headers:
            response.headers["Allow"] = error.get_response().headers["Allow"]
        return response

    @app.errorhandler(InternalServerError)
    def internal_error(_error):
        # Flask has already logged the traceback; drop the failed transaction.
        db.session.rollback()
        return error_page(500, heading=_("Something went wrong"))

    @app.errorhandler(CSRFError)
    def form_expired(_error):
        # The form's token is missing or from another session: offer what was typed again,
        # with a fresh token, rather than losing it. Passwords are never echoed back.
        fields = {
            name: ("" if "password" in name else value)
            for name, value in request.form.items()
            if name not in {"csrf_token", "submit"}
        }
        return error_page(
            400,
            _("Your form expired (it was open too long, or you signed in or out meanwhile)."),
            heading=_("Your form expired"),
            resubmit_fields=fields,
        )

    @app.errorhandler(sa.exc.IntegrityError)
    def lost_race(_error):
        # Two requests claimed the same username or address at once; the forms' checks
        # passed for both, the unique index let one win.
        db.session.rollback()
        return error_page(409, _("That name or address was just taken. Please try another."))


def _custom_description(error: HTTPException) -> str | None:
    """A view's own message (`abort(404, "...")`), not werkzeug's generic text."""
    generic = type(error).description
    return error.description if error.description != generic else None


def anonymous_only(view):
    """Pages for signed-out visitors (sign in, register, reset): signed-in users go home."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if current_user.is_authenticated:
            return redirect(url_for("main.index"))
        return view(*args, **kwargs)

    return wrapper


@login.user_loader
def load_user(session_id):
    """The signed-in user, unless their sessions were ended since this one began."""
    return User.from_session_id(session_id)


def is_safe_next(target: str | None) -> TypeGuard[str]:
    """True for a path inside this site; rejects `//host`, `/\\host` and absolute URLs."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return False
    if any(ch in target for ch in "\\\r\n\t") or any(ord(ch) < 32 for ch in target):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def redirect_with(category: str, message: str, endpoint: str, **values):
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


def paginate(query) -> Page:
    """The `?page=` page of `query`: one row more than shown tells whether there is a next."""
    per_page = current_app.config["POSTS_PER_PAGE"]
    number = page_number()
    rows = db.session.scalars(query.limit(per_page + 1).offset((number - 1) * per_page)).all()
    return Page(items=rows[:per_page], number=number, has_next=len(rows) > per_page)


def page_links(page: Page, endpoint, **kwargs):
    """URLs for the newer/older buttons, or None at either end."""
    # `page` last, so the URL reads `?q=word&page=2`.
    newer = url_for(endpoint, **kwargs, page=page.number - 1) if page.number > 1 else None
    older = url_for(endpoint, **kwargs, page=page.number + 1) if page.has_next else None
    return newer, older


def list_page(template: str, select, endpoint: str, items: str, url_args=None, **context):
    """Render `template` with the `?page=` page of `select` as `items` and its pager links."""
    page = paginate(select)
    newer, older = page_links(page, endpoint, **(url_args or {}))
    context[items] = page
    return render_template(template, newer_url=newer, older_url=older, **context)


@bp.before_app_request
def record_last_seen():
    if request.endpoint in NOT_A_VISIT:
        return
    if current_user.is_authenticated and current_user.seen_now():
        db.session.commit()


# --- timeline and posts ------------------------------------------------------


@bp.route("/", methods=["GET", "POST"])
@bp.route("/index", methods=["GET", "POST"])
@login_required
def index():
    form = PostForm()
    if form.validate_on_submit():
        current_user.publish(form.post.data)
        db.session.commit()
        return redirect_with("success", _("Your post is now live!"), "main.index")
    status = 400 if form.is_submitted() else 200
    # How many rows the page reads decides the timeline's query plan.
    rows = page_number() * current_app.config["POSTS_PER_PAGE"] + 1
    posts = paginate(current_user.following_posts(rows))
    newer, older = page_links(posts, "main.index")
    return (
        render_template(
            "index.html", title=_("Home"), form=form, posts=posts, newer_url=newer, older_url=older
        ),
        status,
    )


@bp.route("/index/new_posts")
@login_required
def new_posts():
    """How many posts reached the home timeline after post `after` (an HTML fragment: a
    "3 new posts" link, or nothing); the open home page asks on each notifications poll."""
    after = request.args.get("after", 0, type=int)
    count = current_user.new_posts_count(after, NEW_POSTS_CAP)
    return render_template("_new_posts.html", count=count, cap=NEW_POSTS_CAP)


NEW_POSTS_CAP = 99  # "99+ new posts": counting further is work nobody reads


@bp.route("/explore")
@login_required
def explore():
    query = (
        sa.select(Post)
        .options(sa.orm.joinedload(Post.author))
        .order_by(Post.timestamp.desc(), Post.id.desc())
    )
    posts = paginate(query)
    newer, older = page_links(posts, "main.explore")
    return render_template(
        "index.html", title=_("Explore"), posts=posts, newer_url=newer, older_url=older
    )


@bp.route("/post/<int(max=2147483647):post_id>")
@login_required
def post(post_id):
    """One post on a page of its own (the link behind each post's date)."""
    found = db.first_or_404(sa.select(Post).where(Post.id == post_id))
    title = f"{found.author.username}: {found.body[:40]}"
    return render_template("post.html", title=title, post=found)


@bp.route("/post/<int(max=2147483647):post_id>/delete", methods=["POST"])
@login_required
def delete_post(post_id):
    if not current_user.delete_post(post_id):
        abort(404)
    db.session.commit()
    flash(_("Your post was deleted."), "info")
    next_page = request.args.get("next")
    return redirect(next_page if is_safe_next(next_page) else url_for("main.index"))


# --- live translation of a post ---------------------------------------------------------


@bp.route("/translate", methods=["POST"])
def translate_post():
    """`{"post_id": n}` → `{"text": the post in the reader's page language}` (the page script
    puts it in place of the post). Only a post's own text is sent to the service: the site
    is no free translator of arbitrary text."""
    if not translation.enabled():
        abort(404)
    if not current_user.is_authenticated:  # a JSON answer the script can show, not a redirect
        return api.error_response(401, str(login.login_message))
    retry_after = ratelimit.translation(current_user.id)
    if retry_after:
        message = _(
            "Too many translations. Please wait %(wait)s and try again.",
            wait=ratelimit.in_words(retry_after),
        )
        return api.error_response(429, message, {"Retry-After": str(retry_after)})
    data = request.get_json(silent=True)
    post_id = data.get("post_id") if isinstance(data, dict) else None
    if not isinstance(post_id, int) or isinstance(post_id, bool) or not 0 < post_id <= MAX_ROW_ID:
        return api.error_response(400, _('Send the id of a post: {"post_id": 123}.'))
    found = db.first_or_404(sa.select(Post).where(Post.id == post_id))
    target = translation.reader_language()
    try:
        text = translation.translate(found.body, found.known_language or "auto", target)
    except translation.TranslationTimeout:
        log.warning("Translating post %s: the translation service did not answer in time", post_id)
        message = _("The translation service is taking too long to answer. Please try again later.")
        return api.error_response(504, message)
    except translation.TranslationError as exc:
        log.warning("Translating post %s: %s", post_id, exc)
        return api.error_response(502, _("Translation service unavailable."))
    return jsonify(text=text, language=target)


# --- accounts ----------------------------------------------------------------


def form_page(form, title: str, heading=None, template="form_page.html", status=None, **context):
    """A page built around `form`: 400 when it was submitted and refused, else 200."""
    if status is None:
        status = 400 if form.is_submitted() else 200
    page = render_template(template, title=title, heading=heading, form=form, **context)
    return page, status


# What a 429 says, per kind of attempt (whole sentences: a translation must agree in gender).
TOO_MANY = {
    "sign-in attempts": _l(
        "Too many sign-in attempts from your address. Please wait %(wait)s and try again."
    ),
    "new accounts": _l(
        "Too many new accounts from your address. Please wait %(wait)s and try again."
    ),
    "password reset requests": _l(
        "Too many password reset requests from your address. Please wait %(wait)s and try again."
    ),
    "password attempts": _l(
        "Too many password attempts from your address. Please wait %(wait)s and try again."
    ),
}


def too_many(page, retry_after: int, what: str):
    """`page` (a view's answer) as a 429 saying how long to wait before trying `what` again."""
    flash(TOO_MANY[what] % {"wait": ratelimit.in_words(retry_after)}, "danger")
    response = make_response(page())
    response.status_code = 429
    response.headers["Retry-After"] = str(retry_after)
    return response


def sign_in(user: User, remember: bool = False) -> None:
    """Start a session for `user`, with a new CSRF token (a form token from before
    signing in must not work after it)."""
    session.pop("csrf_token", None)
    if not user.session_generation:  # a row written without the ORM
        user.end_sessions()
        db.session.commit()
    login_user(user, remember=remember)


@anonymous_only
def login_view():
    form = LoginForm()
    if form.validate_on_submit():
        retry_after = ratelimit.sign_in(form.username.data)
        if retry_after:
            page = functools.partial(form_page, form, _("Sign in"), template="login.html")
            return too_many(page, retry_after, "sign-in attempts")
        user = User.authenticate(form.username.data, form.password.data)
        if user is None:
            flash(_("Invalid username or password."), "danger")
            return form_page(form, _("Sign in"), template="login.html", status=401)
        sign_in(user, remember=form.remember_me.data)
        next_page = request.args.get("next")
        return redirect(next_page if is_safe_next(next_page) else url_for("main.index"))
    return form_page(form, _("Sign in"), template="login.html")


# `login` is the LoginManager; the view keeps the tutorial's URL and endpoint name.
bp.add_url_rule("/login", "login", login_view, methods=["GET", "POST"])


@bp.route("/logout", methods=["POST"])
def logout():
    """Sign out: this session and every copy of its cookies stop working."""
    if current_user.is_authenticated:
        current_user.end_sessions()
        db.session.commit()
    # To the sign-in page: the home page would add a second flash, "please log in".
    logout_user()
    return redirect_with("info", _("You have been logged out."), "main.login")


@bp.route("/register", methods=["GET", "POST"])
@anonymous_only
def register():
    if not registration_open():  # the form's POST included: nobody is created
        return error_page(403, _(REGISTRATION_CLOSED), heading=_("Registration is closed"))
    form = RegistrationForm()
    if form.validate_on_submit():
        retry_after = ratelimit.registration()
        if retry_after:
            return too_many(lambda: form_page(form, _("Register")), retry_after, "new accounts")
        User.register(form.username.data, form.email.data, form.password.data)
        db.session.commit()
        return redirect_with(
            "success",
            _("Congratulations, you are now a registered user! Please sign in."),
            "main.login",
        )
    return form_page(form, _("Register"))


@bp.route("/reset_password_request", methods=["GET", "POST"])
@anonymous_only
def reset_password_request():
    form = ResetPasswordRequestForm()
    if form.validate_on_submit():
        retry_after = ratelimit.reset_mail(form.email.data)
        if retry_after:
            page = functools.partial(
                form_page, form, _("Reset password"), heading=_("Reset your password")
            )
            return too_many(page, retry_after, "password reset requests")
        user = User.by_email(form.email.data)
        if user:
            try:  # the worker writes and sends it: a slow mail server holds no request
                send_password_reset(user.id)
            except Exception:
                log.exception("Could not queue the password reset email")
        # The same answer whether or not the address exists: no account probing.
        return redirect_with(
            "info", _("Check your email for the instructions to reset your password."), "main.login"
        )
    return form_page(form, _("Reset password"), heading=_("Reset your password"))


@bp.route("/reset_password/<token>", methods=["GET", "POST"])
@anonymous_only
def reset_password(token):
    user = User.verify_reset_password_token(token)
    if user is None:
        return redirect_with(
            "danger",
            _("That reset link is invalid, expired or already used."),
            "main.reset_password_request",
        )
    form = ResetPasswordForm()
    if form.validate_on_submit():
        user.change_password(form.password.data)
        db.session.commit()
        return redirect_with("success", _("Your password has been reset."), "main.login")
    return form_page(form, _("Reset password"), heading=_("Choose a new password"))


# --- account settings: password, e-mail, sessions ---------------------------------------


def settings_page(
    status: int = 200, password_form=None, email_form=None, language_form=None, delete_form=None
):
    """The settings page; the form that was just refused (if any) shows its errors."""
    page = render_template(
        "settings.html",
        title=_("Settings"),
        password_form=password_form or ChangePasswordForm(formdata=None),
        email_form=email_form or ChangeEmailForm(formdata=None),
        language_form=language_form or LanguageForm(language=current_user.language or ""),
        delete_form=delete_form or DeleteAccountForm(formdata=None),
        form=EmptyForm(),
    )
    return page, status


def submitted_settings_form(form_class, name: str):
    """The submitted settings form (shown as `name` on the page), and None when it is valid
    and its `current_password` is right; else the answer to give (the page with its errors,
    or 429)."""
    form = form_class()
    page = functools.partial(settings_page, 400, **{name: form})
    if not form.validate_on_submit():
        return form, page()
    return form, current_password_refused(form, page)


def current_password_refused(form, page):
    """None when `form.current_password` is the signed-in user's password; else the answer
    to give: a 429 when guessed too often, or `page` with the field's error."""
    retry_after = ratelimit.sign_in(current_user.username)
    if retry_after:
        return too_many(page, retry_after, "password attempts")
    if not current_user.check_password(form.current_password.data):
        form.current_password.errors = [_("That is not your current password.")]
        return page()
    return None


@bp.route("/settings", endpoint="settings")
@login_required
def account_settings():
    return settings_page()


@bp.route("/settings/password", methods=["POST"])
@login_required
def change_password():
    form, refusal = submitted_settings_form(ChangePasswordForm, "password_form")
    if refusal:
        return refusal
    current_user.change_password(form.password.data)
    db.session.commit()
    # Every other browser and API token is signed out; this one carries on.
    cookie = current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token")
    remembered = bool(request.cookies.get(cookie))
    sign_in(current_user._get_current_object(), remember=remembered)
    message = _("Your password has been changed. Every other session has been signed out.")
    return redirect_with("success", message, "main.settings")


@bp.route("/settings/email", methods=["POST"])
@login_required
def change_email():
    form, refusal = submitted_settings_form(ChangeEmailForm, "email_form")
    if refusal:
        return refusal
    try:  # the worker writes and sends it: a slow mail server holds no request
        send_email_change(current_user.id, form.email.data)
    except Exception:
        log.exception("Could not queue the email change confirmation")
        flash(_("The confirmation email could not be sent. Please try again later."), "danger")
        return redirect(url_for("main.settings"))
    flash(
        _(
            "We sent a confirmation link to %(email)s. Your address changes when you open it.",
            email=form.email.data,
        ),
        "info",
    )
    return redirect(url_for("main.settings"))


@bp.route("/settings/language", methods=["POST"])
@login_required
def change_language():
    form = LanguageForm()
    if not form.validate_on_submit():
        return settings_page(400, language_form=form)
    current_user.choose_language(form.language.data)
    db.session.commit()
    # Flashed after the change: the message is already in the chosen language.
    refresh()
    return redirect_with("success", _("Your language has been saved."), "main.settings")


@bp.route("/settings/sign_out_everywhere", methods=["POST"])
@login_required
def sign_out_everywhere():
    """End every session (this one too) and every API token."""
    current_user.end_all_sessions()
    db.session.commit()
    logout_user()
    message = _("You have been signed out everywhere, API tokens included.")
    return redirect_with("info", message, "main.login")


@bp.route("/settings/delete", methods=["POST"])
@login_required
def delete_account():
    """Sign the user out everywhere and lock the account now; the worker deletes it."""
    form, refusal = submitted_settings_form(DeleteAccountForm, "delete_form")
    if refusal:
        return refusal
    start_account_deletion(current_user._get_current_object())
    logout_user()
    flash(_("Your account is locked and being deleted, with everything in it."), "info")
    return redirect(url_for("main.login"))


@bp.route("/confirm_email/<token>", methods=["GET", "POST"])
def confirm_email(token):
    """The link mailed to a new address: a button (POST) makes it the account's address."""
    user, new_email = User.email_change_from_token(token)
    if user is None:
        flash(_("That confirmation link is invalid, expired or already used."), "danger")
        return redirect(url_for("main.index"))
    form = EmptyForm()
    if form.validate_on_submit():
        owner = User.by_email(new_email)
        if owner is not None and owner.id != user.id:
            return error_page(409, _("That email address has been registered meanwhile."))
        user.update_profile(email=new_email)
        db.session.commit()
        flash(_("Your email address is now %(email)s.", email=new_email), "success")
        return redirect(url_for("main.index"))
    form.submit.label.text = f"Use {new_email}"
    heading = _(
        "Make %(email)s the email address of %(username)s?", email=new_email, username=user.username
    )
    return form_page(form, _("Confirm email"), heading=heading)


# --- profiles and following ----------------------------------------------------


@bp.route("/user/<username>")
@login_required
def user(username):
    user = db.first_or_404(User.named(username))
    posts = paginate(user.posts_select())
    newer, older = page_links(posts, "main.user", username=user.username)
    return render_template(
        "user.html",
        title=user.username,
        user=user,
        posts=posts,
        newer_url=newer,
        older_url=older,
        form=EmptyForm(),
    )


def people_page(username: str, relation: str):
    """`username`'s followers or the people they follow (`relation`), a page of them."""
    user = db.first_or_404(User.named(username))
    select = user.followers_select() if relation == "followers" else user.following_select()
    followers = relation == "followers"
    heading = _("Followers of %(username)s", username=user.username) if followers else None
    return list_page(
        "people.html",
        select,
        f"main.{relation}",
        "people",
        {"username": user.username},
        title=heading or _("Followed by %(username)s", username=user.username),
        heading=heading or _("%(username)s follows", username=user.username),
        user=user,
    )


@bp.route("/user/<username>/followers")
@login_required
def followers(username):
    return people_page(username, "followers")


@bp.route("/user/<username>/following")
@login_required
def following(username):
    return people_page(username, "following")


@bp.route("/user/<username>/header")
@login_required
def user_header(username):
    """A profile's header (an HTML fragment): the page script swaps it in after a follow."""
    user = db.first_or_404(User.named(username))
    return render_template("_profile_header.html", user=user, form=EmptyForm())


def picture_accepted(field) -> bool:
    """Check an uploaded picture's size and header at once (the worker decodes it later);
    False, with the reason on the field, for a file that cannot be a picture."""
    if not field.data:
        return True
    data = field.data.read()
    field.data.seek(0)
    try:
        check_avatar(data)
    except AvatarError as error:
        field.errors.append(error.shown())
        return False
    return True


@bp.route("/edit_profile", methods=["GET", "POST"])
@login_required
def edit_profile():
    form = EditProfileForm(current_user)
    if form.validate_on_submit() and picture_accepted(form.avatar):
        current_user.update_profile(username=form.username.data, about_me=form.about_me.data)
        db.session.commit()
        if form.avatar.data:  # the worker converts it; the banner tells
            start_avatar(current_user, form.avatar.data)
        return redirect_with("success", _("Your changes have been saved."), "main.edit_profile")
    if request.method == "GET":
        form.username.data = current_user.username
        form.about_me.data = current_user.about_me
    return form_page(form, _("Edit profile"), template="edit_profile.html")


@bp.route("/avatar_urls")
@login_required
def avatar_urls():
    """Your picture's URL for each `size` asked for, as JSON: the page script swaps them in
    when the worker has made a new picture (only the server knows the new URLs)."""
    sizes = sorted({size for size in request.args.getlist("size", type=int) if 1 <= size <= 1024})
    return jsonify({str(size): current_user.avatar(size) for size in sizes[:16]})


AVATAR_FILE = re.compile(r"[0-9]+-[0-9]+\.webp")


@bp.route("/avatars/<file>")
def avatar_file(file):
    """An uploaded picture (public, like the profile it is on)."""
    if not AVATAR_FILE.fullmatch(file):
        abort(404)
    return send_avatar(file)


@bp.route("/avatar/<username>/<int(min=1, max=1024):size>.svg")
def generated_avatar(username, size):
    """The picture of a user without an upload, made here from the name alone."""
    response = make_response(generated_avatar_svg(username[:USERNAME_MAX], size))
    response.mimetype = "image/svg+xml"
    response.cache_control.public = True
    response.cache_control.max_age = 86400
    return response


def change_following(username: str, follow: bool):
    """Follow or unfollow `username`, then back to their profile (or say why not)."""
    user = User.by_username(username)
    if user is None:
        return redirect_with(
            "danger", _("User %(username)s not found.", username=username), "main.index"
        )
    if user.id == current_user.id:
        flash(_("You cannot follow or unfollow yourself."), "warning")
    elif follow:
        current_user.follow(user)
        flash(_("You are following %(username)s!", username=username), "success")
    else:
        current_user.unfollow(user)
        flash(_("You are not following %(username)s.", username=username), "info")
    db.session.commit()
    return redirect(url_for("main.user", username=username))


@bp.route("/follow/<username>", methods=["POST"])
@login_required
def follow(username):
    return change_following(username, follow=True)


@bp.route("/unfollow/<username>", methods=["POST"])
@login_required
def unfollow(username):
    return change_following(username, follow=False)


# --- notifications -----------------------------------------------------------------


# Requests the page makes on its own: they neither load the user nor count as being seen
# (a forgotten tab must not keep someone "last seen just now").
NOT_A_VISIT = {"main.notifications", "main.healthz", "main.readyz", "static"}


@bp.route("/notifications")
def notifications():
    """JSON notifications newer than `since` (a Unix time); read-only, cheap to poll.

    Every open page polls this, so it takes the user id Flask-Login keeps in the signed
    session instead of loading the User row, and reads with one indexed query.
    """
    session_id = session.get("_user_id")
    if session_id is None:
        # No session yet (say, only a "remember me" cookie): let Flask-Login decide.
        if not current_user.is_authenticated:
            return login.unauthorized()
        session_id = current_user.get_id()
    since = request.args.get("since", 0.0, type=float) or 0.0
    payload = notifications_payload(str(session_id), since)
    if payload is None:  # signed out everywhere since this session began
        session.clear()
        return login.unauthorized()
    return jsonify(payload)


# --- background tasks: export your posts -------------------------------------------------


@bp.app_context_processor
def inject_task_banners():
    """The banners for the user's active and just-finished tasks, on every page."""
    # Templates are also rendered outside requests (emails, in the worker): no user there.
    if not has_request_context() or not current_user.is_authenticated:
        return {}
    tasks = current_user.tasks_in_progress()
    return {"task_banners": tasks, **worker_state(tasks)}


def worker_state(tasks) -> dict:
    """What the banners of `tasks` say about the workers: `worker_missing` (a task waits in
    the queue and no consumer is alive) and `live_consumer_ids` (a running task whose
    consumer is not among them waits for the worker to restart). Asked only when a task is
    active."""
    if not any(task.is_active for task in tasks):
        return {"worker_missing": False, "live_consumer_ids": set()}
    live = {consumer.id for consumer in live_consumers()}
    waiting = any(task.status == TaskStatus.QUEUED for task in tasks)
    return {"worker_missing": waiting and not live, "live_consumer_ids": live}


def human_size(size: int | None) -> str:
    """1536 → "1.5 KB"."""
    amount = float(size or 0)
    for unit in ("bytes", "KB", "MB", "GB"):
        if amount < 1024 or unit == "GB":
            return f"{int(amount)} {unit}" if unit == "bytes" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


@bp.route("/export_posts", methods=["POST"], endpoint="export_posts")
@login_required
def export_posts_view():
    task = start_export(current_user)
    if task is None:
        flash(_("An export of your posts is already in progress."), "warning")
    elif task.status == TaskStatus.FAILED:
        flash(_("The export could not be started: %(reason)s", reason=task.status_text), "danger")
    return redirect(url_for("main.user", username=current_user.username))


@bp.route("/import", methods=["GET", "POST"], endpoint="import_posts")
@login_required
def import_posts_view():
    """Upload an archive; the worker imports it, with its progress in the task banner."""
    form = ImportForm()
    if not form.validate_on_submit():
        return form_page(form, _("Import posts"), template="import.html")
    task = start_import(current_user, form.file.data)
    if task is None:
        flash(_("An import of your posts is already in progress."), "warning")
    elif task.status == TaskStatus.FAILED:
        flash(_("The import could not be started: %(reason)s", reason=task.status_text), "danger")
    else:
        flash(_("Your file is uploaded; the import runs in the background."), "info")
    return redirect(url_for("main.user", username=current_user.username))


@bp.route("/tasks")
@login_required
def tasks():
    return list_page(
        "tasks.html",
        current_user.tasks_select(),
        "main.tasks",
        "tasks",
        title=_("Your tasks"),
        form=EmptyForm(),
    )


def own_task(task_id: str) -> Task:
    """The current user's task with that id; anyone else's (or none) is a 404."""
    if not current_user.is_authenticated:
        abort(404)
    return db.first_or_404(Task.owned_by(current_user.id, task_id))


@bp.route("/tasks/<task_id>/banner")
@login_required
def task_banner(task_id):
    """One task's banner, rendered here only: the page script swaps it in as the task moves."""
    task = own_task(task_id)
    if not task.shows_banner:
        return ""
    next_url = request.args.get("next")
    return render_template(
        "_task_banner.html",
        task=task,
        next_url=next_url if is_safe_next(next_url) else None,
        **worker_state([task]),
    )


@bp.route("/exports/<task_id>")
def download_export(task_id):
    download = send_export(own_task(task_id))
    if download is None:
        abort(404)
    return download


@bp.route("/tasks/<task_id>/cancel", methods=["POST"])
@login_required
def cancel_task(task_id):
    task = own_task(task_id)
    # The task's banner and its row say what became of it ("Cancelled.", "Cancelling…"):
    # a flash would say it a second time, in other words. Only a cancel that came too late,
    # whose task has no banner left to say so, gets one.
    if task.cancel(huey) is None and not task.shows_banner:
        flash(_("%(task)s: already finished.", task=task.description_text), "warning")
    return redirect(safe_referrer())


@bp.route("/tasks/<task_id>/dismiss", methods=["POST"])
@login_required
def dismiss_task(task_id):
    task = own_task(task_id)
    if task.dismiss():
        db.session.commit()
    else:
        flash(_("A task still in progress cannot be dismissed; cancel it first."), "warning")
    return redirect(safe_referrer())


def safe_referrer() -> str:
    """Back to the page the button was on (a local `next`), else the task history."""
    target = request.args.get("next")
    return target if is_safe_next(target) else url_for("main.tasks")


# --- private messages ----------------------------------------------------------------


def _message_recipient(username):
    """The user to write to, or an error page saying why not (4xx)."""
    recipient = User.by_username(username)
    if recipient is None:
        return None, error_page(404, _("There is no user called %(username)s.", username=username))
    if recipient.id == current_user.id:
        return None, error_page(400, _("You cannot send a private message to yourself."))
    return recipient, None


@bp.route("/send_message/<username>", methods=["GET", "POST"])
@login_required
def send_message(username):
    recipient, refusal = _message_recipient(username)
    if refusal:
        return refusal
    form = MessageForm()
    if form.validate_on_submit():
        current_user.send_message(recipient, form.message.data)
        db.session.commit()
        return redirect_with(
            "success",
            _("Your message to %(username)s has been sent.", username=recipient.username),
            "main.user",
            username=recipient.username,
        )
    # Replying: the message answered is shown above the form (only one sent to this user).
    reply_to = request.args.get("reply_to", type=int)
    answered = db.session.scalar(current_user.received_message(reply_to)) if reply_to else None
    heading = _("Send a private message to %(username)s", username=recipient.username)
    return form_page(
        form, _("Send message"), heading=heading, template="send_message.html", answered=answered
    )


@bp.route("/messages")
@login_required
def messages():
    """The messages sent to the current user, newest first. Only reads: the page marks them
    read with a POST (a link from another site must not clear the badge)."""
    page = paginate(current_user.received_messages_select())
    newer, older = page_links(page, "main.messages")
    newest = max((message.timestamp for message in page), default=None)
    # To the microsecond: the newest message itself must count as read.
    form = MarkReadForm(up_to=newest.isoformat() + "Z" if newest else "")
    return render_template(
        "messages.html",
        title=_("Messages"),
        messages=page,
        newer_url=newer,
        older_url=older,
        form=form,
    )


@bp.route("/messages/read", methods=["POST"])
@login_required
def mark_messages_read():
    """Messages up to the newest one the page showed are read (the page script posts this)."""
    form = MarkReadForm()
    if not form.validate_on_submit():
        return error_page(400)
    current_user.mark_messages_read(parse_utc(form.up_to.data))
    db.session.commit()
    if wants_json():
        return jsonify({"unread": current_user.unread_message_count()})
    return redirect(url_for("main.messages"))


def parse_utc(text: str | None):
    """`2024-05-01T12:00:00.123456Z` → a naive UTC datetime; None when missing or malformed."""
    try:
        return datetime.fromisoformat((text or "").replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        return None


@bp.route("/messages/sent")
@login_required
def sent_messages():
    """The messages the current user sent, newest first."""
    query = current_user.sent_messages_select()
    return list_page(
        "messages.html",
        query,
        "main.sent_messages",
        "messages",
        title=_("Sent messages"),
        sent=True,
    )


@bp.route("/messages/newer")
@login_required
def newer_messages():
    """Messages received after message `after` (HTML fragments, newest first), for an open
    /messages page. Only reads: the page marks them read once it has shown them."""
    after = request.args.get("after", 0, type=int)
    query = current_user.received_messages_select().where(Message.id > after)
    found = db.session.scalars(query.limit(current_app.config["POSTS_PER_PAGE"])).all()
    return render_template("_messages.html", messages=found)


# --- user popups -----------------------------------------------------------------------


@bp.route("/user/<username>/popup")
@login_required
def user_popup(username):
    """The small profile card shown when hovering a username (an HTML fragment)."""
    user = db.first_or_404(User.named(username))
    return render_template("_user_popup.html", user=user, form=EmptyForm())


# --- search -------------------------------------------------------------------------------


PEOPLE_FOUND_MAX = 10  # people shown above the posts; a longer name narrows the list


@bp.route("/search")
@login_required
def search():
    query = request.args.get("q", "")
    terms = search_module.parse_query(query)
    per_page = current_app.config["POSTS_PER_PAGE"]
    # Deep pages are never useful and a huge OFFSET would overflow the database's integers.
    page = min(page_number(), search_module.MAX_PAGE)
    results = search_module.search_posts(terms, page, per_page)
    newer, older = page_links(results, "main.search", q=query)
    highlighted = {post.id: search_module.highlight(post.body, terms) for post in results.items}
    # People whose name contains what was typed (one word, as a username is).
    name = query.strip().lstrip("@")
    people: Sequence[User] = ()
    if name and page == 1 and len(name) <= USERNAME_MAX and " " not in name:
        people = db.session.scalars(User.named_like(name).limit(PEOPLE_FOUND_MAX)).all()
    return render_template(
        "search.html",
        title=_("%(query)s - Search", query=query.strip()[:40]) if query.strip() else _("Search"),
        query=query,
        terms=terms,
        people=people,
        results=results,
        candidates=search_module.CANDIDATES,
        posts=results.items,
        highlighted=highlighted,
        newer_url=newer,
        older_url=older,
    )


# --- health checks for uptime monitors and load balancers -------------------------------


@bp.route("/healthz")
def healthz():
    """200 while this web process answers; it checks nothing else."""
    return jsonify(status="ok")


@bp.route("/readyz")
def readyz():
    """200 when the database and the queue answer and a worker reported in recently; else
    503. `checks` says "ok" or what is wrong for each part; `missing` names the parts not
    ready."""
    checks = {"database": database_check(), "queue": queue_check()}
    # The heartbeats are kept in the database: with it down, nobody can tell.
    checks["worker"] = (
        worker_check() if checks["database"] == "ok" else "unknown: the database is down"
    )
    missing = [part for part, result in checks.items() if result != "ok"]
    body = {"status": "unavailable" if missing else "ok", "missing": missing, "checks": checks}
    return jsonify(body), 503 if missing else 200


def database_check() -> str:
    try:
        db.session.execute(sa.text("SELECT 1"))
    except Exception as exc:
        log.warning("Readiness: the database does not answer: %s", exc)
        db.session.rollback()
        return "the database does not answer"
    return "ok"


def queue_check() -> str:
    try:
        huey.pending_count()
    except Exception as exc:
        log.warning("Readiness: the task queue does not answer: %s", exc)
        return "the task queue does not answer"
    return "ok"


def worker_check() -> str:
    """ "ok" while some consumer is alive; otherwise how long since one was last heard."""
    try:
        if live_consumers():
            return "ok"
        silence = seconds_since_last_heartbeat()
    except Exception:
        log.exception("Readiness: could not read the worker heartbeats")
        return "the worker heartbeats cannot be read"
    if silence is None:  # none ever, or the last one stopped cleanly
        return "no worker is running"
    return f"no worker has reported in for {silence:.0f} s"
