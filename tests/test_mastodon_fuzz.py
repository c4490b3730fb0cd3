"""Property-based fuzz of the Mastodon client API from its own OpenAPI document
(/api/v1/microblog/openapi.json), against a real gunicorn on a database migrated with
Alembic: no request gets a 5xx, and every response matches the document (status, content
type, headers, body)."""

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

import mastodon_instance  # noqa: F401  (registers every route of the document)
from database import db
from mastodon_contract import document
from microblog import create_app
from models import Post, User
from oauth_store import SCOPES
from tests.mastodon_support import bearer, make_token
from tests.test_api_fuzz import data_dir as data_dir  # noqa: F401  (the migrated data dir)
from tests.test_api_fuzz import database_url, gunicorn, is_gunicorn_line_limit

EXAMPLES = 10


@pytest.fixture(scope="module")
def masto_server(data_dir):  # noqa: F811
    app = create_app({"DATA_DIR": str(data_dir), "SQLALCHEMY_DATABASE_URI": database_url(data_dir)})
    with app.app_context():
        fuzzer = db.session.scalar(db.select(User).where(User.username == "fuzzer"))
        db.session.add(Post(body="hello @pager #fuzz", author=fuzzer))
        db.session.commit()
        user_id = fuzzer.id
    token = make_token(app, user_id, " ".join(SCOPES[:4]))
    # The per-address limit would otherwise turn most app registrations into 429s.
    factory = "microblog:create_app({'APP_REGISTRATION_LIMIT_PER_IP': 1000000})"
    with gunicorn(data_dir, factory, "--workers", "2") as base_url:
        yield {"base_url": base_url, "token": token}
    with app.app_context():
        db.engine.dispose()


schema = schemathesis.openapi.from_dict(
    document(),
    config=schemathesis.Config.from_dict(
        {
            "generation": {
                "allow-extra-parameters": False,
                "with-security-parameters": False,
            },
            # Schema-valid data may still be refused (an unknown id is a 404, a status over
            # the length limit a 422); every other check stays on.
            "checks": {"positive_data_acceptance": {"enabled": False}},
        }
    ),
)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_mastodon_api_fuzz(case, masto_server):
    response = case.call(base_url=masto_server["base_url"], headers=bearer(masto_server["token"]))
    if is_gunicorn_line_limit(response):
        return
    case.validate_response(response)


def test_the_published_document_is_this_one(masto_server):
    published = requests.get(
        masto_server["base_url"] + "/api/v1/microblog/openapi.json", timeout=10
    ).json()
    assert published == document()
    assert "/api/v1/statuses" in published["paths"]
    assert published["components"]["securitySchemes"]["oauth2"]["type"] == "oauth2"
