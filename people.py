"""People: profiles, followers and following, profile editing, pictures, follows, popups."""

import re

from flask import (
    Blueprint,
    abort,
    flash,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required
from flask_wtf.file import FileField
from werkzeug.wrappers import Response

import blocks
import federation_out
from avatar_store import send_avatar
from avatars import AvatarError, generated_avatar_svg
from database import db
from follows import Follows
from forms import EditProfileForm, EmptyForm
from models import USERNAME_MAX, User
from tasks import check_avatar, start_avatar
from web import form_page, int_args, list_page, page_links, paginate, redirect_with

bp = Blueprint("people", __name__)


AVATAR_FILE = re.compile(r"[0-9]+-[0-9]+\.webp")


@bp.route("/user/<username>")
@login_required
def user(username: str) -> str:
    user = db.first_or_404(User.named(username))
    posts = paginate(user.posts_select())
    newer, older = page_links(posts, "people.user", username=user.username)
    return render_template(
        "user.html",
        title=user.username,
        user=user,
        posts=posts,
        newer_url=newer,
        older_url=older,
        form=EmptyForm(),
    )


def people_page(username: str, relation: str) -> str:
    """`username`'s followers or the people they follow (`relation`), a page of them."""
    user = db.first_or_404(User.named(username))
    select = (
        Follows(user).followers_select()
        if relation == "followers"
        else Follows(user).following_select()
    )
    select = select.where(blocks.not_hidden_from(current_user, User.id))
    followers = relation == "followers"
    heading = _("Followers of %(username)s", username=user.username) if followers else None
    return list_page(
        "people.html",
        select,
        f"people.{relation}",
        "people",
        {"username": user.username},
        title=heading or _("Followed by %(username)s", username=user.username),
        heading=heading or _("%(username)s follows", username=user.username),
        user=user,
    )


@bp.route("/user/<username>/followers")
@login_required
def followers(username: str) -> str:
    return people_page(username, "followers")


@bp.route("/user/<username>/following")
@login_required
def following(username: str) -> str:
    return people_page(username, "following")


@bp.route("/user/<username>/header")
@login_required
def user_header(username: str) -> str:
    """A profile's header (an HTML fragment): the page script swaps it in after a follow."""
    user = db.first_or_404(User.named(username))
    return render_template("_profile_header.html", user=user, form=EmptyForm())


def picture_accepted(field: FileField) -> bool:
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
def edit_profile() -> ResponseReturnValue:
    form = EditProfileForm(current_user)
    if form.validate_on_submit() and picture_accepted(form.avatar):
        current_user.update_profile(username=form.username.data, about_me=form.about_me.data)
        db.session.commit()
        federation_out.profile_updated(current_user)
        if form.avatar.data:  # the worker converts it; the banner tells
            start_avatar(current_user, form.avatar.data)
        return redirect_with("success", _("Your changes have been saved."), "people.edit_profile")
    if request.method == "GET":
        form.username.data = current_user.username
        form.about_me.data = current_user.about_me
    return form_page(form, _("Edit profile"), template="edit_profile.html")


@bp.route("/avatar_urls")
@login_required
def avatar_urls() -> Response:
    """Your picture's URL for each `size` asked for, as JSON: the page script swaps them in
    when the worker has made a new picture (only the server knows the new URLs)."""
    sizes = sorted({size for size in int_args("size") if 1 <= size <= 1024})
    return jsonify({str(size): current_user.avatar(size) for size in sizes[:16]})


@bp.route("/avatars/<file>")
def avatar_file(file: str) -> Response:
    """An uploaded picture (public, like the profile it is on)."""
    if not AVATAR_FILE.fullmatch(file):
        abort(404)
    return send_avatar(file)


@bp.route("/avatar/<username>/<int(min=1, max=1024):size>.svg")
def generated_avatar(username: str, size: int) -> Response:
    """The picture of a user without an upload, made here from the name alone."""
    response = make_response(generated_avatar_svg(username[:USERNAME_MAX], size))
    response.mimetype = "image/svg+xml"
    response.cache_control.public = True
    response.cache_control.max_age = 86400
    return response


def change_following(username: str, follow: bool) -> Response:
    """Follow or unfollow `username`, then back to their profile (or say why not)."""
    user = User.by_username(username)
    if user is None:
        return redirect_with(
            "danger", _("User %(username)s not found.", username=username), "posts.index"
        )
    if user.id == current_user.id:
        flash(_("You cannot follow or unfollow yourself."), "warning")
    elif follow and blocks.either_blocks(current_user.id, user.id):
        flash(_("You cannot follow %(username)s.", username=username), "warning")
    else:
        federation_out.change_following(current_user, user, follow)
        flash(*following_message(user, follow))
    return redirect(url_for("people.user", username=username))


def following_message(user: User, follow: bool) -> tuple[str, str]:
    """What a follow or unfollow says: a remote account's server has yet to answer."""
    if not follow:
        return _("You are not following %(username)s.", username=user.username), "info"
    if user.domain is not None:
        return _("You asked to follow %(username)s.", username=user.username), "success"
    return _("You are following %(username)s!", username=user.username), "success"


@bp.route("/follow/<username>", methods=["POST"])
@login_required
def follow(username: str) -> Response:
    return change_following(username, follow=True)


@bp.route("/unfollow/<username>", methods=["POST"])
@login_required
def unfollow(username: str) -> Response:
    return change_following(username, follow=False)


@bp.route("/user/<username>/popup")
@login_required
def user_popup(username: str) -> str:
    """The small profile card shown when hovering a username (an HTML fragment)."""
    user = db.first_or_404(User.named(username))
    return render_template("_user_popup.html", user=user, form=EmptyForm())
