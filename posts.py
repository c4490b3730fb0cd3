"""Posts: the home timeline, explore, a post's page, deleting, translating, search."""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

import api
import blocks
import federation_in
import federation_out
import fedfetch
import mentions
import ratelimit
import search
import translation
from database import MAX_ROW_ID, db
from forms import EmptyForm, PostForm
from models import USERNAME_MAX, Post, User, users_named_like
from timeline import Timeline
from web import (
    int_arg,
    is_safe_next,
    list_page,
    login_manager,
    page_links,
    page_number,
    paginate,
    redirect_with,
)

log = logging.getLogger("microblog")

bp = Blueprint("posts", __name__)


NEW_POSTS_CAP = 99  # "99+ new posts": counting further is work nobody reads


PEOPLE_FOUND_MAX = 10  # people shown above the posts; a longer name narrows the list


@bp.route("/", methods=["GET", "POST"])
@bp.route("/index", methods=["GET", "POST"])
@login_required
def index() -> ResponseReturnValue:
    form = PostForm()
    if form.validate_on_submit():
        post = current_user.publish(form.post.data)
        db.session.commit()
        federation_out.post_published(post)
        return redirect_with("success", _("Your post is now live!"), "posts.index")
    status = 400 if form.is_submitted() else 200
    posts = paginate(Timeline(current_user).posts())
    newer, older = page_links(posts, "posts.index")
    return (
        render_template(
            "index.html", title=_("Home"), form=form, posts=posts, newer_url=newer, older_url=older
        ),
        status,
    )


@bp.route("/index/new_posts")
@login_required
def new_posts() -> str:
    """How many posts reached the home timeline after post `after` (an HTML fragment: a
    "3 new posts" link, or nothing); the open home page asks on each notifications poll."""
    after = int_arg("after", 0)
    count = Timeline(current_user).newer_count(after, NEW_POSTS_CAP)
    return render_template("_new_posts.html", count=count, cap=NEW_POSTS_CAP)


@bp.route("/explore")
@login_required
def explore() -> str:
    query = (
        sa.select(Post)
        .where(blocks.not_hidden_from(current_user, Post.user_id))
        .options(sa.orm.joinedload(Post.author))
        .order_by(Post.timestamp.desc(), Post.id.desc())
    )
    posts = paginate(query)
    newer, older = page_links(posts, "posts.explore")
    return render_template(
        "index.html", title=_("Explore"), posts=posts, newer_url=newer, older_url=older
    )


@bp.route("/post/<row_id:post_id>")
@login_required
def post(post_id: int) -> str:
    """One post on a page of its own (the link behind each post's date)."""
    found = db.first_or_404(sa.select(Post).where(Post.id == post_id))
    title = f"{found.author.username}: {found.body[:40]}"
    return render_template("post.html", title=title, post=found)


@bp.route("/post/<row_id:post_id>/delete", methods=["POST"])
@login_required
def delete_post(post_id: int) -> Response:
    if not current_user.delete_post(post_id):
        abort(404)
    db.session.commit()
    federation_out.post_deleted(current_user, post_id)
    flash(_("Your post was deleted."), "info")
    next_page = request.args.get("next")
    return redirect(next_page if is_safe_next(next_page) else url_for("posts.index"))


@bp.route("/translate", methods=["POST"])
def translate_post() -> Response:
    """`{"post_id": n}` → `{"text": the post in the reader's page language}` (the page script
    puts it in place of the post). Only a post's own text is sent to the service: the site
    is no free translator of arbitrary text."""
    if not translation.enabled():
        abort(404)
    if not current_user.is_authenticated:  # a JSON answer the script can show, not a redirect
        return api.error_response(401, str(login_manager().login_message))
    retry_after = ratelimit.translation(current_user.id)
    if retry_after:
        message = ratelimit.refusal("translations", retry_after)
        return api.error_response(429, message, {"Retry-After": str(retry_after)})
    post_id = api.json_object().get("post_id")
    if not isinstance(post_id, int) or isinstance(post_id, bool) or not 0 < post_id <= MAX_ROW_ID:
        return api.error_response(400, _('Send the id of a post: {"post_id": 123}.'))
    found = db.first_or_404(sa.select(Post).where(Post.id == post_id))
    # The same rule as the link under the post: nothing else is sent to the service.
    if not translation.offered_for(found):
        message = _(
            "This post cannot be translated: it is already in your language, "
            "or its language is not known."
        )
        return api.error_response(400, message)
    target = translation.reader_language()
    try:
        text = translation.translate(found.body, found.known_language, target)
    except translation.TranslationTimeout:
        log.warning("Translating post %s: the translation service did not answer in time", post_id)
        message = _("The translation service is taking too long to answer. Please try again later.")
        return api.error_response(504, message)
    except translation.TranslationError as exc:
        log.warning("Translating post %s: %s", post_id, exc)
        return api.error_response(502, _("Translation service unavailable."))
    return jsonify(text=text, language=target)


def find_remote_account(query: str) -> User | None:
    """The account `@name@host` (or an actor URL) names, looked up on its server; the
    worker then reads its latest posts and counts. None, with a message, when not found."""
    retry_after = ratelimit.remote_lookup(current_user.id)
    if retry_after:
        flash(ratelimit.refusal("account lookups", retry_after), "warning")
        return None
    try:
        if blocks.domain_blocked(blocks.normalize_domain(query) or ""):
            raise fedfetch.FetchError("this site blocks its server")  # asked nothing of it
        user = fedfetch.remote_account(query)
    except fedfetch.FetchError as exc:
        flash(
            _("%(query)s could not be found: %(reason)s", query=query.strip(), reason=exc.reason),
            "warning",
        )
        return None
    federation_in.fetch_remote_profile(user.id)
    return user


@bp.route("/search", endpoint="search")
@login_required
def search_page() -> ResponseReturnValue:
    query = request.args.get("q", "")
    if current_app.config["FEDERATION"] and fedfetch.names_remote_account(query):
        found = find_remote_account(query)
        if found is not None:
            return redirect(url_for("people.user", username=found.username))
    terms = search.parse_query(query)
    per_page = current_app.config["POSTS_PER_PAGE"]
    # Deep pages are never useful and a huge OFFSET would overflow the database's integers.
    page = min(page_number(), search.MAX_PAGE)
    results = search.search_posts(terms, page, per_page, hidden=blocks.blocked_by(current_user))
    newer, older = page_links(results, "posts.search", q=query)
    highlighted = {post.id: search.highlight(post.body, terms) for post in results.items}
    # People whose name contains what was typed (one word, as a username is).
    name = query.strip().lstrip("@")
    people: Sequence[User] = ()
    if name and page == 1 and len(name) <= USERNAME_MAX and " " not in name:
        named = users_named_like(name).where(blocks.not_hidden_from(current_user, User.id))
        people = db.session.scalars(named.limit(PEOPLE_FOUND_MAX)).all()
    return render_template(
        "search.html",
        title=_("%(query)s - Search", query=query.strip()[:40]) if query.strip() else _("Search"),
        query=query,
        terms=terms,
        people=people,
        results=results,
        candidates=search.CANDIDATES,
        posts=results.items,
        highlighted=highlighted,
        newer_url=newer,
        older_url=older,
    )


@bp.route("/mentions")
@login_required
def mentions_page() -> str:
    """The posts that mention the current user. Only reads: "Mark as read" is a POST."""
    return list_page(
        "mentions.html",
        mentions.mentioning(current_user),
        "posts.mentions_page",
        "posts",
        title=_("Mentions"),
        form=EmptyForm(),
    )


@bp.route("/mentions/read", methods=["POST"])
@login_required
def mentions_read() -> Response:
    if not EmptyForm().validate_on_submit():
        abort(400)
    mentions.mark_read(current_user)
    db.session.commit()
    return redirect(url_for("posts.mentions_page"))
