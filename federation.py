"""Federation's routes: how other servers find this site's users (WebFinger, host-meta,
NodeInfo), read them (actors, outboxes, follower lists, notes, with content negotiation on
the pages' own URLs) and talk to them (the inboxes). Registered only when FEDERATION is on.
"""

import logging
from typing import Any
from xml.sax.saxutils import escape as xml_escape

import sqlalchemy as sa
from flask import Blueprint, Flask, abort, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

import activities
import actors
import federation_in
import fedfetch
import fedsign
import inbound
from database import db
from mailer import site_link
from models import Post, User, registration_open
from web import whole_number

log = logging.getLogger(__name__)

bp = Blueprint("federation", __name__)

# What NodeInfo reports as the software's version.
SOFTWARE_VERSION = "1.0.0"
ACTIVITY_JSON = "application/activity+json"
JRD_JSON = "application/jrd+json"
# The media types that ask for ActivityPub JSON instead of a page.
ACTIVITY_TYPES = (ACTIVITY_JSON, "application/ld+json")


def init_app(app: Flask) -> None:
    """Add the federation routes, and the JSON answers on the profile and post pages, when
    FEDERATION is on; without it none of them exists."""
    # Remote accounts may be shown even with federation off (it was on before).
    app.jinja_env.globals["remote_actor"] = actors.remote_actor
    app.jinja_env.globals["follow_requested"] = actors.follow_request
    if not app.config["FEDERATION"]:
        return
    app.register_blueprint(bp)
    app.before_request(answer_activity_json)


def activity_response(document: dict[str, Any], status: int = 200) -> Response:
    response = jsonify(document)
    response.status_code = status
    response.mimetype = ACTIVITY_JSON
    response.headers["Vary"] = "Accept"
    return response


def wants_activity_json() -> bool:
    """Whether the client asks for ActivityPub JSON rather than HTML (browsers never do).

    Read by hand: the JSON-LD type comes with a `profile` parameter, which werkzeug's
    matching would have to equal exactly."""
    best = {"json": 0.0, "html": 0.0}
    for item in request.headers.get("Accept", "").split(","):
        media_type, *params = (part.strip() for part in item.split(";"))
        kind = {**dict.fromkeys(ACTIVITY_TYPES, "json"), "text/html": "html"}.get(
            media_type.lower()
        )
        if kind is not None:
            best[kind] = max(best[kind], _quality(params))
    return best["json"] > 0 and best["json"] >= best["html"]


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


# --- discovery --------------------------------------------------------------------------


@bp.route("/.well-known/webfinger")
def webfinger() -> ResponseReturnValue:
    resource = request.args.get("resource", "")
    user = _webfinger_user(resource)
    if user is None:
        abort(404)
    actor = actors.local_actor_id(user.id)
    profile = site_link("people.user", username=user.username)
    document = {
        "subject": f"acct:{user.username}@{actors.site_host()}",
        "aliases": [actor, profile],
        "links": [
            {"rel": "self", "type": ACTIVITY_JSON, "href": actor},
            {"rel": "http://webfinger.net/rel/profile-page", "type": "text/html", "href": profile},
        ],
    }
    response = jsonify(document)
    response.mimetype = JRD_JSON
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def _webfinger_user(resource: str) -> User | None:
    """The local user an `acct:name@host` resource (or actor/profile URL) names."""
    if resource.startswith(("https://", "http://")):
        return actors.local_user_for_actor(resource)
    name, _, host = resource.removeprefix("acct:").lstrip("@").rpartition("@")
    if not name or host.lower() != actors.site_host().lower():
        return None
    user = User.by_username(name)
    return user if user is not None and user.domain is None and user.is_active else None


@bp.route("/.well-known/host-meta")
def host_meta() -> Response:
    template = xml_escape(f"{actors.site_url()}/.well-known/webfinger?resource={{uri}}")
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<XRD xmlns="http://docs.oasis-open.org/ns/xri/xrd-1.0">\n'
        f'  <Link rel="lrdd" type="application/xrd+xml" template="{template}"/>\n'
        "</XRD>\n"
    )
    return Response(xml, mimetype="application/xrd+xml")


@bp.route("/.well-known/nodeinfo")
def nodeinfo_links() -> Response:
    return jsonify(
        {
            "links": [
                {
                    "rel": "http://nodeinfo.diaspora.software/ns/schema/2.1",
                    "href": f"{actors.site_url()}/nodeinfo/2.1",
                }
            ]
        }
    )


@bp.route("/nodeinfo/2.1")
def nodeinfo() -> Response:
    local = User.domain.is_(None)
    users = db.session.scalar(sa.select(sa.func.count(User.id)).where(local)) or 0
    posts = db.session.scalar(
        sa.select(sa.func.count(Post.id)).join(User, Post.user_id == User.id).where(local)
    )
    document = {
        "version": "2.1",
        "software": {"name": "microblog", "version": SOFTWARE_VERSION},
        "protocols": ["activitypub"],
        "services": {"inbound": [], "outbound": []},
        "openRegistrations": registration_open(),
        "usage": {"users": {"total": users}, "localPosts": posts or 0},
        # Client libraries that detect the server type (megalodon) read this and speak
        # the Mastodon client API to us, which we serve; the software name stays ours.
        "metadata": {"upstream": {"name": "mastodon"}},
    }
    response = jsonify(document)
    response.mimetype = "application/json"
    response.headers["Content-Type"] = (
        'application/json; profile="http://nodeinfo.diaspora.software/ns/schema/2.1#"'
    )
    return response


# --- reading ----------------------------------------------------------------------------


def require_signed_fetch() -> None:
    """With FEDERATION_AUTHORIZED_FETCH, 401 unless the GET carries a valid signature of a
    known or fetchable actor."""
    if not current_app.config["FEDERATION_AUTHORIZED_FETCH"]:
        return
    try:
        federation_in.verified_key_owner("GET", request_target(), dict(request.headers), None)
    except (fedsign.SignatureError, fedfetch.FetchError) as exc:
        abort(401, str(getattr(exc, "reason", exc)))


def request_target() -> str:
    query = request.query_string.decode("latin-1")
    return request.path + (f"?{query}" if query else "")


def local_user_or_404(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None or user.domain is not None or not user.is_active:
        abort(404)
    return user


def page_arg() -> int | None:
    value = request.args.get("page")
    if value is None:
        return None
    page = whole_number("page", value)
    if page < 1 or page > 100_000:
        abort(400)
    return page


@bp.route("/actor")
def instance_actor() -> Response:
    # Never behind authorized fetch: other servers fetch it to check our signatures.
    return activity_response(activities.instance_actor())


@bp.route("/actor/outbox")
def instance_outbox() -> Response:
    return activity_response(
        activities.ordered_collection(f"{actors.instance_actor_id()}/outbox", 0)
    )


@bp.route("/actors/<row_id:user_id>")
def actor(user_id: int) -> Response:
    require_signed_fetch()
    return activity_response(activities.person(local_user_or_404(user_id)))


@bp.route("/actors/<row_id:user_id>/outbox")
def outbox(user_id: int) -> Response:
    require_signed_fetch()
    return activity_response(activities.outbox(local_user_or_404(user_id), page_arg()))


@bp.route("/actors/<row_id:user_id>/followers")
def followers(user_id: int) -> Response:
    require_signed_fetch()
    user = local_user_or_404(user_id)
    return activity_response(activities.people(user, "followers", page_arg()))


@bp.route("/actors/<row_id:user_id>/following")
def following(user_id: int) -> Response:
    require_signed_fetch()
    user = local_user_or_404(user_id)
    return activity_response(activities.people(user, "following", page_arg()))


# The pages that are also ActivityPub objects: a profile (the actor) and a post (its Note).
NEGOTIATED = {"people.user", "posts.post"}


def answer_activity_json() -> ResponseReturnValue | None:
    """A profile page or a post page asked for as ActivityPub JSON: the actor or the Note
    (before the pages' sign-in check, which is for people)."""
    if request.endpoint not in NEGOTIATED or request.method != "GET":
        return None
    if not wants_activity_json():
        return None
    args = request.view_args or {}
    if request.endpoint == "people.user":
        user = User.by_username(str(args.get("username")))
        if user is None or user.domain is not None or not user.is_active:
            abort(404)
        require_signed_fetch()
        return activity_response(activities.person(user))
    if request.endpoint == "posts.post":
        return note_answer(int(args["post_id"]))
    return None


def note_answer(post_id: int) -> Response:
    require_signed_fetch()
    post = db.session.get(Post, post_id)
    if post is None:
        gone = actors.tombstone(site_link("posts.post", post_id=post_id))
        if gone is None:
            abort(404)
        return activity_response(activities.tombstone(gone.ap_id, gone.deleted_at), 410)
    if post.author.domain is not None:
        abort(404)  # a copy of a remote post: its own server answers for it
    return activity_response(activities.with_context(activities.note(post)))


# --- the inboxes ------------------------------------------------------------------------


@bp.route("/inbox", methods=["POST"])
def shared_inbox() -> ResponseReturnValue:
    return inbound.receive()


@bp.route("/actors/<row_id:user_id>/inbox", methods=["POST"])
def actor_inbox(user_id: int) -> ResponseReturnValue:
    local_user_or_404(user_id)
    return inbound.receive()


@bp.route("/user/<username>/inbox", methods=["POST"])
def user_inbox(username: str) -> ResponseReturnValue:
    user = User.by_username(username)
    if user is None or user.domain is not None:
        abort(404)
    return inbound.receive()
