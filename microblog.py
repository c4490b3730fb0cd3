"""The Microblog web app: the extensions and `create_app()`, which reads as the table of
contents of the site. Each area of the site is a module of its own with its Blueprint."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from flask_babel import lazy_gettext as _l
from flask_bootstrap import Bootstrap5
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

import accounts
import admin
import api
import cli
import config as settings
import error_mail
import federation
import federation_admin
import feeds
import health
import i18n
import mastodon_instance
import messages
import moderation
import oauth
import people
import posts
import schema_migrations
import search
import static_files
import task_pages
import translation
import web
from database import db, isoformat_utc
from follows import Follows
from formatting import CardKit, linkify
from jobs import TaskStatus
from mailer import mail
from models import User, registration_open
from page_frame import frame_state

login = LoginManager()
login.login_view = "accounts.login"
login.login_message = _l("Please log in to access this page.")
csrf = CSRFProtect()
bootstrap = Bootstrap5()


@login.user_loader
def load_user(session_id: str) -> User | None:
    """The signed-in user, unless their sessions were ended since this one began."""
    return User.from_session_id(session_id)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then the environment (both from config.py), then `config`
    (tests)."""
    config = dict(config or {})
    # Every file we create (databases, exports, the secret key) must be 0600: set once,
    # here at startup, for the whole process.
    settings.use_private_files()
    app = Flask(__name__)
    app.request_class = web.UploadRequest
    app.url_map.converters["row_id"] = web.RowIdConverter  # before any route is added
    data_dir = Path(config["DATA_DIR"]) if "DATA_DIR" in config else None
    app.config.from_mapping(settings.from_environment(data_dir))
    app.config.from_mapping(config)
    app.config["FEDERATION"] = settings.federation_enabled(app.config)
    cookies = settings.cookie_security(app.config["SITE_URL"])
    app.config.from_mapping({key: value for key, value in cookies.items() if key not in config})
    if app.config["TRUSTED_PROXIES"]:
        # Believe the client address and scheme only from that many proxies in front.
        proxies = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]

    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = settings.engine_options(
        app.config["SQLALCHEMY_DATABASE_URI"]
    )
    db.init_app(app)
    login.init_app(app)
    mail.init_app(app)
    # Before the CSRF check, which reads the body: the order of registration is the order
    # the hooks run in.
    app.before_request(web.refuse_anonymous_upload)
    csrf.init_app(app)
    bootstrap.init_app(app)
    i18n.init_app(app)

    static_files.init_app(app)  # /static, with long-lived caching
    app.register_blueprint(accounts.bp)  # sign in, register, reset, settings
    app.register_blueprint(posts.bp)  # home, explore, a post, translate, search
    app.register_blueprint(people.bp)  # profiles, follows, pictures, popups
    app.register_blueprint(messages.bp)  # private messages
    app.register_blueprint(feeds.bp)  # Atom feeds of users' posts
    app.register_blueprint(task_pages.bp)  # export, import, task history and banners
    app.register_blueprint(health.bp)  # the notifications poll, /healthz, /readyz
    app.register_blueprint(admin.bp)  # /admin
    app.register_blueprint(moderation.bp)  # blocks of accounts and domains
    app.register_blueprint(moderation.admin_bp)  # /admin/domains: blocked for the whole site
    app.register_blueprint(federation_admin.bp)  # /admin/federation
    api.init_app(app)  # /api: JSON, token auth, no CSRF
    federation.init_app(app)  # WebFinger, NodeInfo, actors, inboxes (when FEDERATION is on)
    csrf.exempt(federation.bp)  # other servers sign their requests instead
    oauth.init_app(app)  # /oauth: Mastodon apps sign in; authorized apps on /settings
    mastodon_instance.init_app(app)  # /api/v1, /api/v2: the Mastodon client API
    app.after_request(web.add_security_headers)
    web.register_error_handlers(app)
    app.cli.add_command(schema_migrations.migration_commands)  # flask db …
    app.cli.add_command(search.reindex_command)
    cli.init_app(app)  # flask user …, backup, restore
    app.cli.add_command(federation_admin.federation_cli)  # flask federation …

    app.jinja_env.filters["isoformat_utc"] = isoformat_utc
    app.jinja_env.filters["human_size"] = web.human_size
    app.jinja_env.filters["linkify"] = linkify
    app.jinja_env.globals["TaskStatus"] = TaskStatus
    app.jinja_env.globals["registration_open"] = registration_open
    app.jinja_env.globals["offers_translation"] = translation.offered_for
    app.jinja_env.globals["card_kit"] = CardKit
    app.jinja_env.globals["fixed_url"] = web.fixed_url  # static files, pages without arguments
    app.jinja_env.globals["made_once"] = web.made_once
    app.jinja_env.globals["frame_state"] = frame_state  # the navbar's badges
    # What the profile cards show of follows.
    app.jinja_env.globals["Follows"] = Follows
    error_mail.configure_logging(app)
    return app
