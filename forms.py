"""Web forms; Flask-WTF adds the CSRF token (field `csrf_token`) to each."""

from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired
from werkzeug.datastructures import MultiDict
from wtforms import (
    BooleanField,
    HiddenField,
    PasswordField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Email, EqualTo, Length, Regexp, ValidationError

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
)

USERNAME_RULES = [
    DataRequired(),
    Length(min=1, max=USERNAME_MAX),
    Regexp(USERNAME_PATTERN, message="Use letters, digits, '.', '_' or '-' only."),
]
EMAIL_RULES = [DataRequired(), Length(max=EMAIL_MAX), Email()]
PASSWORD_RULES = [DataRequired(), Length(min=PASSWORD_MIN, max=PASSWORD_MAX)]


def repeat_password(label: str = "Repeat password") -> PasswordField:
    """The second password field, which must match `password`."""
    return PasswordField(
        label, validators=[DataRequired(), EqualTo("password", message="Passwords must match.")]
    )


def current_password_field() -> PasswordField:
    """The account's password, asked again before a sensitive change."""
    return PasswordField("Current password", validators=[DataRequired(), Length(max=PASSWORD_MAX)])


USERNAME_TAKEN = "That username is taken. Please use a different one."
EMAIL_TAKEN = "That email address is already registered."


def filled(form_class, fields: dict[str, str], *args):
    """A form filled from `fields` instead of a request, without CSRF, and validated: the
    API and the command line check input with exactly the web forms' rules."""
    form = form_class(*args, formdata=MultiDict(fields), meta={"csrf": False})
    form.validate()
    return form


def first_error(form) -> str:
    """The first problem a validated form found, as one line."""
    return next(iter(form.errors.values()))[0]


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=USERNAME_MAX)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=PASSWORD_MAX)])
    remember_me = BooleanField("Remember me")
    submit = SubmitField("Sign in")


class RegistrationForm(FlaskForm):
    username = StringField("Username", validators=USERNAME_RULES)
    email = StringField("Email", validators=EMAIL_RULES)
    password = PasswordField("Password", validators=PASSWORD_RULES)
    password2 = repeat_password()
    submit = SubmitField("Register")

    def validate_username(self, username):
        if User.by_username(username.data) is not None:
            raise ValidationError(USERNAME_TAKEN)

    def validate_email(self, email):
        if User.by_email(email.data) is not None:
            raise ValidationError(EMAIL_TAKEN)


class NewUserForm(RegistrationForm):
    """Registration over the API, which also takes the profile's `about_me`."""

    about_me = TextAreaField("About me", validators=[Length(max=ABOUT_ME_MAX)])


class ResetPasswordRequestForm(FlaskForm):
    email = StringField("Email", validators=EMAIL_RULES)
    submit = SubmitField("Request password reset")


class ResetPasswordForm(FlaskForm):
    password = PasswordField("Password", validators=PASSWORD_RULES)
    password2 = repeat_password()
    submit = SubmitField("Reset password")


class ChangePasswordForm(FlaskForm):
    current_password = current_password_field()
    password = PasswordField("New password", validators=PASSWORD_RULES)
    password2 = repeat_password("Repeat new password")
    submit = SubmitField("Change password")


class ChangeEmailForm(FlaskForm):
    email = StringField("New email", validators=EMAIL_RULES)
    current_password = current_password_field()
    submit = SubmitField("Change email")

    def validate_email(self, email):
        if User.by_email(email.data) is not None:
            raise ValidationError(EMAIL_TAKEN)


class DeleteAccountForm(FlaskForm):
    current_password = current_password_field()
    submit = SubmitField("Delete my account")


class EditProfileForm(FlaskForm):
    username = StringField("Username", validators=USERNAME_RULES)
    about_me = TextAreaField("About me", validators=[Length(max=ABOUT_ME_MAX)])
    avatar = FileField(
        "New picture (PNG, JPEG or WebP; optional)",
        validators=[
            FileAllowed(["png", "jpg", "jpeg", "webp"], "Choose a PNG, JPEG or WebP picture.")
        ],
    )
    submit = SubmitField("Save")

    def __init__(self, user: User, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def validate_username(self, username):
        if username.data != self.user.username and User.by_username(username.data) is not None:
            raise ValidationError(USERNAME_TAKEN)


class AccountForm(EditProfileForm):
    """The profile form plus the e-mail address (the API changes both in one request)."""

    email = StringField("Email", validators=EMAIL_RULES)

    def validate_email(self, field):
        owner = User.by_email(field.data)
        if owner is not None and owner.id != self.user.id:
            raise ValidationError(EMAIL_TAKEN)


class PostForm(FlaskForm):
    post = TextAreaField(
        "Say something",
        validators=[DataRequired(message="Write something first."), Length(max=POST_MAX)],
    )
    submit = SubmitField("Post")


class EmptyForm(FlaskForm):
    """A button-only form: follow, unfollow, delete, logout. Carries just the CSRF token."""

    submit = SubmitField("Submit")


# --- private messages ---------------------------------------------------------------


class MessageForm(FlaskForm):
    message = TextAreaField(
        "Message",
        validators=[DataRequired(message="Write something first."), Length(max=MESSAGE_MAX)],
    )
    submit = SubmitField("Send")


class MarkReadForm(FlaskForm):
    """ "I have seen these messages": the newest one shown, so later ones stay unread."""

    up_to = HiddenField()


class ImportForm(FlaskForm):
    file = FileField(
        "Your posts.json, a Mastodon archive (.zip) or its outbox.json",
        validators=[FileRequired("Choose a file to import.")],
    )
    submit = SubmitField("Import")
