"""Accounts: sign in and out, register, password reset, settings, e-mail confirmation."""

import functools
import logging
from collections.abc import Callable

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import refresh
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response

import account_links
import administration
import ratelimit
from account_deletion import start_account_deletion
from database import db
from forms import (
    ChangeEmailForm,
    ChangePasswordForm,
    DeleteAccountForm,
    EmptyForm,
    LanguageForm,
    LoginForm,
    RegistrationForm,
    ResetPasswordForm,
    ResetPasswordRequestForm,
)
from models import REGISTRATION_CLOSED, User, registration_open
from oauth_store import authorized_apps
from tasks import send_email_change, send_password_reset
from web import anonymous_only, error_page, form_page, is_safe_next, redirect_with, too_many

log = logging.getLogger("microblog")

bp = Blueprint("accounts", __name__)


# Requests the page makes on its own: they neither load the user nor count as being seen
# (a forgotten tab must not keep someone "last seen just now").
NOT_A_VISIT = {"health.notifications", "health.healthz", "health.readyz", "static"}


@bp.before_app_request
def record_last_seen() -> None:
    if request.endpoint in NOT_A_VISIT:
        return
    if current_user.is_authenticated and current_user.seen_now():
        db.session.commit()


def sign_in(user: User, remember: bool = False) -> None:
    """Start a session for `user`, with a new CSRF token (a form token from before
    signing in must not work after it)."""
    session.pop("csrf_token", None)
    if not user.session_generation:  # a row written without the ORM
        user.end_sessions()
        db.session.commit()
    login_user(user, remember=remember)


@bp.route("/login", methods=["GET", "POST"])
@anonymous_only
def login() -> ResponseReturnValue:
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
        return redirect(next_page if is_safe_next(next_page) else url_for("posts.index"))
    return form_page(form, _("Sign in"), template="login.html")


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    """Sign out: this session and every copy of its cookies stop working."""
    if current_user.is_authenticated:
        current_user.end_sessions()
        db.session.commit()
    # To the sign-in page: the home page would add a second flash, "please log in".
    logout_user()
    return redirect_with("info", _("You have been logged out."), "accounts.login")


@bp.route("/register", methods=["GET", "POST"])
@anonymous_only
def register() -> ResponseReturnValue:
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
            "accounts.login",
        )
    return form_page(form, _("Register"))


@bp.route("/reset_password_request", methods=["GET", "POST"])
@anonymous_only
def reset_password_request() -> ResponseReturnValue:
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
            "info",
            _("Check your email for the instructions to reset your password."),
            "accounts.login",
        )
    return form_page(form, _("Reset password"), heading=_("Reset your password"))


@bp.route("/reset_password/<token>", methods=["GET", "POST"])
@anonymous_only
def reset_password(token: str) -> ResponseReturnValue:
    user = account_links.user_from_reset_token(token)
    if user is None:
        return redirect_with(
            "danger",
            _("That reset link is invalid, expired or already used."),
            "accounts.reset_password_request",
        )
    form = ResetPasswordForm()
    if form.validate_on_submit():
        user.change_password(form.password.data)
        db.session.commit()
        return redirect_with("success", _("Your password has been reset."), "accounts.login")
    return form_page(form, _("Reset password"), heading=_("Choose a new password"))


def settings_page(
    status: int = 200,
    password_form: ChangePasswordForm | None = None,
    email_form: ChangeEmailForm | None = None,
    language_form: LanguageForm | None = None,
    delete_form: DeleteAccountForm | None = None,
) -> tuple[str, int]:
    """The settings page; the form that was just refused (if any) shows its errors."""
    page = render_template(
        "settings.html",
        title=_("Settings"),
        password_form=password_form or ChangePasswordForm(formdata=None),
        email_form=email_form or ChangeEmailForm(formdata=None),
        language_form=language_form or LanguageForm(language=current_user.language or ""),
        delete_form=delete_form or DeleteAccountForm(formdata=None),
        form=EmptyForm(),
        apps=authorized_apps(current_user),
    )
    return page, status


def submitted_settings_form(
    form_class: type[FlaskForm], name: str
) -> tuple[FlaskForm, ResponseReturnValue | None]:
    """The submitted settings form (shown as `name` on the page), and None when it is valid
    and its `current_password` is right; else the answer to give (the page with its errors,
    or 429)."""
    form = form_class()
    page = functools.partial(settings_page, 400, **{name: form})
    if not form.validate_on_submit():
        return form, page()
    return form, current_password_refused(form, page)


def current_password_refused(
    form: FlaskForm, page: Callable[[], tuple[str, int]]
) -> ResponseReturnValue | None:
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
def account_settings() -> tuple[str, int]:
    return settings_page()


@bp.route("/settings/password", methods=["POST"])
@login_required
def change_password() -> ResponseReturnValue:
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
    return redirect_with("success", message, "accounts.settings")


@bp.route("/settings/email", methods=["POST"])
@login_required
def change_email() -> ResponseReturnValue:
    form, refusal = submitted_settings_form(ChangeEmailForm, "email_form")
    if refusal:
        return refusal
    try:  # the worker writes and sends it: a slow mail server holds no request
        send_email_change(current_user.id, form.email.data)
    except Exception:
        log.exception("Could not queue the email change confirmation")
        flash(_("The confirmation email could not be sent. Please try again later."), "danger")
        return redirect(url_for("accounts.settings"))
    flash(
        _(
            "We sent a confirmation link to %(email)s. Your address changes when you open it.",
            email=form.email.data,
        ),
        "info",
    )
    return redirect(url_for("accounts.settings"))


@bp.route("/settings/language", methods=["POST"])
@login_required
def change_language() -> ResponseReturnValue:
    form = LanguageForm()
    if not form.validate_on_submit():
        return settings_page(400, language_form=form)
    current_user.choose_language(form.language.data)
    db.session.commit()
    # Flashed after the change: the message is already in the chosen language.
    refresh()
    return redirect_with("success", _("Your language has been saved."), "accounts.settings")


@bp.route("/settings/sign_out_everywhere", methods=["POST"])
@login_required
def sign_out_everywhere() -> Response:
    """End every session (this one too) and every API token."""
    current_user.end_all_sessions()
    db.session.commit()
    logout_user()
    message = _("You have been signed out everywhere, API tokens included.")
    return redirect_with("info", message, "accounts.login")


@bp.route("/settings/delete", methods=["POST"])
@login_required
def delete_account() -> ResponseReturnValue:
    """Sign the user out everywhere and lock the account now; the worker deletes it."""
    form, refusal = submitted_settings_form(DeleteAccountForm, "delete_form")
    if refusal:
        return refusal
    last_admin = administration.refuse_leaving_no_admin(current_user)
    if last_admin:
        return redirect_with("warning", _(last_admin), "accounts.settings")
    start_account_deletion(current_user._get_current_object())
    logout_user()
    flash(_("Your account is locked and being deleted, with everything in it."), "info")
    return redirect(url_for("accounts.login"))


@bp.route("/confirm_email/<token>", methods=["GET", "POST"])
def confirm_email(token: str) -> ResponseReturnValue:
    """The link mailed to a new address: a button (POST) makes it the account's address."""
    user, new_email = account_links.email_change_from_token(token)
    if user is None:
        flash(_("That confirmation link is invalid, expired or already used."), "danger")
        return redirect(url_for("posts.index"))
    form = EmptyForm()
    if form.validate_on_submit():
        owner = User.by_email(new_email)
        if owner is not None and owner.id != user.id:
            return error_page(409, _("That email address has been registered meanwhile."))
        user.update_profile(email=new_email)
        db.session.commit()
        flash(_("Your email address is now %(email)s.", email=new_email), "success")
        return redirect(url_for("posts.index"))
    form.submit.label.text = f"Use {new_email}"
    heading = _(
        "Make %(email)s the email address of %(username)s?", email=new_email, username=user.username
    )
    return form_page(form, _("Confirm email"), heading=heading)
