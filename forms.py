"""Web forms; Flask-WTF adds the CSRF token (field `csrf_token`) to each."""

import sqlalchemy as sa
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Email, EqualTo, Length, Regexp, ValidationError

from models import User, db

USERNAME_RULES = [
    DataRequired(),
    Length(min=1, max=64),
    # \Z, not $: "$" also matches before a trailing newline.
    Regexp(r"^[A-Za-z0-9_.-]+\Z", message="Use letters, digits, '.', '_' or '-' only."),
]
PASSWORD_RULES = [DataRequired(), Length(min=8, max=128)]


def username_taken(username: str) -> bool:
    return db.session.scalar(sa.select(User.id).where(User.username == username)) is not None


def email_taken(email: str) -> bool:
    query = sa.select(User.id).where(sa.func.lower(User.email) == email.strip().lower())
    return db.session.scalar(query) is not None


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=128)])
    remember_me = BooleanField("Remember me")
    submit = SubmitField("Sign in")


class RegistrationForm(FlaskForm):
    username = StringField("Username", validators=USERNAME_RULES)
    email = StringField("Email", validators=[DataRequired(), Length(max=120), Email()])
    password = PasswordField("Password", validators=PASSWORD_RULES)
    password2 = PasswordField(
        "Repeat password",
        validators=[DataRequired(), EqualTo("password", message="Passwords must match.")],
    )
    submit = SubmitField("Register")

    def validate_username(self, username):
        if username_taken(username.data):
            raise ValidationError("That username is taken. Please use a different one.")

    def validate_email(self, email):
        if email_taken(email.data):
            raise ValidationError("That email address is already registered.")


class ResetPasswordRequestForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=120), Email()])
    submit = SubmitField("Request password reset")


class ResetPasswordForm(FlaskForm):
    password = PasswordField("Password", validators=PASSWORD_RULES)
    password2 = PasswordField(
        "Repeat password",
        validators=[DataRequired(), EqualTo("password", message="Passwords must match.")],
    )
    submit = SubmitField("Reset password")


class EditProfileForm(FlaskForm):
    username = StringField("Username", validators=USERNAME_RULES)
    about_me = TextAreaField("About me", validators=[Length(max=140)])
    submit = SubmitField("Save")

    def __init__(self, original_username, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.original_username = original_username

    def validate_username(self, username):
        if username.data != self.original_username and username_taken(username.data):
            raise ValidationError("That username is taken. Please use a different one.")


class PostForm(FlaskForm):
    post = TextAreaField(
        "Say something",
        validators=[DataRequired(message="Write something first."), Length(max=140)],
    )
    submit = SubmitField("Post")


class EmptyForm(FlaskForm):
    """A button-only form: follow, unfollow, delete, logout. Carries just the CSRF token."""

    submit = SubmitField("Submit")


# --- private messages ---------------------------------------------------------------


class MessageForm(FlaskForm):
    message = TextAreaField(
        "Message",
        validators=[DataRequired(message="Write something first."), Length(min=1, max=140)],
    )
    submit = SubmitField("Send")
