"""Web forms; Flask-WTF adds the CSRF token (field `csrf_token`) to each."""

from collections.abc import Callable
from typing import Any, TypeVar

from flask_babel import LazyString
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired
from werkzeug.datastructures import MultiDict
from wtforms import (
    BooleanField,
    Field,
    HiddenField,
    PasswordField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Email, EqualTo, Length, Regexp, ValidationError

from i18n import LANGUAGES
from models import (
    ABOUT_ME_MAX,
    EMAIL_MAX,
    MESSAGE_MAX,
    PASSWORD_MAX,
    PASSWORD_MIN,
    POST_MAX,
    USERNAME_MAX,
    USERNAME_PATTERN,
    User,
    plain_text,
)


def as_plain_text(data: str | None) -> str | None:
    """A text box's filter: line breaks as LF before Length counts (models.text_length's rule:
    with them Length's code points are the site's characters) and before it is stored."""
    return plain_text(data) if isinstance(data, str) else data


USERNAME_RULES = [
    DataRequired(),
    Length(min=1, max=USERNAME_MAX),
    Regexp(USERNAME_PATTERN, message=_l("Use letters, digits, '.', '_' or '-' only.")),
]
EMAIL_RULES = [DataRequired(), Length(max=EMAIL_MAX), Email()]
PASSWORD_RULES = [DataRequired(), Length(min=PASSWORD_MIN, max=PASSWORD_MAX)]


def repeat_password(label: str | None = None) -> PasswordField:
    """The second password field, which must match `password`."""
    return PasswordField(
        label or _l("Repeat password"),
        validators=[DataRequired(), EqualTo("password", message=_l("Passwords must match."))],
    )


def current_password_field() -> PasswordField:
    """The account's password, asked again before a sensitive change."""
    return PasswordField(
        _l("Current password"), validators=[DataRequired(), Length(max=PASSWORD_MAX)]
    )


USERNAME_TAKEN = _l("That username is taken. Please use a different one.")
EMAIL_TAKEN = _l("That email address is already registered.")


# Any web form class, for functions that give back the form they were given the class of.
Form = TypeVar("Form", bound=FlaskForm)


def filled(form_class: type[Form], fields: dict[str, str], *args: Any) -> Form:
    """A form filled from `fields` instead of a request, without CSRF, and validated: the
    API and the command line check input with exactly the web forms' rules."""
    form = form_class(*args, formdata=MultiDict(fields), meta={"csrf": False})
    form.validate()
    return form


def first_error(form: FlaskForm) -> str:
    """The first problem a validated form found, as one line."""
    return str(next(iter(form.errors.values()))[0])


class LoginForm(FlaskForm):
    username = StringField(_l("Username"), validators=[DataRequired(), Length(max=USERNAME_MAX)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=PASSWORD_MAX)])
    remember_me = BooleanField(_l("Remember me"))
    submit = SubmitField(_l("Sign in"))


class NotTaken:
    """A validator: the value must not name another account (`form.user`, on forms that edit
    an account, may keep its own)."""

    def __init__(self, find_owner: Callable[[str], User | None], message: str):
        self.find_owner = find_owner
        self.message = message

    def __call__(self, form: FlaskForm, field: Field) -> None:
        owner = self.find_owner(field.data)
        if owner is not None and owner != getattr(form, "user", None):
            raise ValidationError(self.message)


NEW_USERNAME_RULES = [*USERNAME_RULES, NotTaken(User.by_username, USERNAME_TAKEN)]
NEW_EMAIL_RULES = [*EMAIL_RULES, NotTaken(User.by_email, EMAIL_TAKEN)]


class RegistrationForm(FlaskForm):
    username = StringField(_l("Username"), validators=NEW_USERNAME_RULES)
    email = StringField(_l("Email"), validators=NEW_EMAIL_RULES)
    password = PasswordField(_l("Password"), validators=PASSWORD_RULES)
    password2 = repeat_password()
    submit = SubmitField(_l("Register"))


class NewUserForm(RegistrationForm):
    """Registration over the API, which also takes the profile's `about_me`."""

    about_me = TextAreaField(
        _l("About me"), validators=[Length(max=ABOUT_ME_MAX)], filters=[as_plain_text]
    )


class ResetPasswordRequestForm(FlaskForm):
    email = StringField(_l("Email"), validators=EMAIL_RULES)
    submit = SubmitField(_l("Request password reset"))


class ResetPasswordForm(FlaskForm):
    password = PasswordField(_l("Password"), validators=PASSWORD_RULES)
    password2 = repeat_password()
    submit = SubmitField(_l("Reset password"))


class PasswordCheckedForm(FlaskForm):
    """A change to the account itself: it asks for the current password first."""

    current_password = current_password_field()


class ChangePasswordForm(PasswordCheckedForm):
    password = PasswordField(_l("New password"), validators=PASSWORD_RULES)
    password2 = repeat_password(_l("Repeat new password"))
    submit = SubmitField(_l("Change password"))


class ChangeEmailForm(PasswordCheckedForm):
    email = StringField(_l("New email"), validators=NEW_EMAIL_RULES)
    submit = SubmitField(_l("Change email"))


class DeleteAccountForm(PasswordCheckedForm):
    submit = SubmitField(_l("Delete my account"))


class EditProfileForm(FlaskForm):
    username = StringField(_l("Username"), validators=NEW_USERNAME_RULES)
    about_me = TextAreaField(
        _l("About me"), validators=[Length(max=ABOUT_ME_MAX)], filters=[as_plain_text]
    )
    avatar = FileField(
        _l("New picture (PNG, JPEG or WebP; optional)"),
        validators=[
            FileAllowed(["png", "jpg", "jpeg", "webp"], _l("Choose a PNG, JPEG or WebP picture."))
        ],
    )
    submit = SubmitField(_l("Save"))

    def __init__(self, user: User, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.user = user


class AccountForm(EditProfileForm):
    """The profile form plus the e-mail address (the API changes both in one request)."""

    email = StringField(_l("Email"), validators=NEW_EMAIL_RULES)


def text_box(label: str | LazyString, limit: int) -> TextAreaField:
    """A box that must not be blank, up to `limit` characters (too long is refused, never cut)."""
    return TextAreaField(
        label,
        validators=[DataRequired(message=_l("Write something first.")), Length(max=limit)],
        filters=[as_plain_text],
    )


class PostForm(FlaskForm):
    post = text_box(_l("Say something"), POST_MAX)
    submit = SubmitField(_l("Post"))


class EmptyForm(FlaskForm):
    """A button-only form: follow, unfollow, delete, logout. Carries just the CSRF token."""

    submit = SubmitField(_l("Submit"))


# --- private messages ---------------------------------------------------------------


class MessageForm(FlaskForm):
    message = text_box(_l("Message"), MESSAGE_MAX)
    submit = SubmitField(_l("Send"))


class MarkReadForm(FlaskForm):
    """ "I have seen these messages": the newest one shown, so later ones stay unread."""

    up_to = HiddenField()


class LanguageForm(FlaskForm):
    """The language of pages and mail; "" follows the browser."""

    language = SelectField(
        _l("Language"),
        # Each language's name is in that language, marked so for screen readers.
        choices=[
            SelectChoice("", _l("The browser's language")),
            *(SelectChoice(code, name, {"lang": code}) for code, name in LANGUAGES.items()),
        ],
        validate_choice=True,
    )
    submit = SubmitField(_l("Save language"))


class ImportForm(FlaskForm):
    file = FileField(
        _l("Your posts.json, a Mastodon archive (.zip) or its outbox.json"),
        validators=[FileRequired(_l("Choose a file to import."))],
    )
    submit = SubmitField(_l("Import"))
