"""The JSON API's requests and responses as pydantic models, declared once each.

api.py names them on its routes: flask-openapi3 validates path, query and JSON body with
them, the responses are built from them, and /api/openapi.json is generated from both.
The content rules of a field (lengths, characters) are the web forms' own, which read the
limits named in models.py: `form_rules` shows them in the document, the form checks them,
so the API and the web site refuse exactly the same input with the same (translated) words.
"""

import re
from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeVar

from flask_babel import gettext as _
from flask_openapi3 import FileStorage
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError
from wtforms import Field as FormField
from wtforms.validators import DataRequired, Email, Length, Regexp

from database import MAX_ROW_ID
from forms import AccountForm, DeleteAccountForm, NewUserForm, PostForm
from jobs import TaskStatus

DEFAULT_PER_PAGE = 10
MAX_PER_PAGE = 100
MAX_PAGE = 1_000_000  # keeps OFFSET inside what every database accepts
MAX_ID = MAX_ROW_ID  # larger ids cannot exist

# The error type of a refusal whose message is already the one to show the client.
API_MESSAGE = "api_message"
# The error type of a string with a lone UTF-16 surrogate (JSON's "\ud800"): it is not
# text, and neither the database nor the password hash can take it.
NOT_TEXT = "not_text"


def form_rules(field: FormField) -> dict[str, Any]:
    """The JSON Schema keywords for the checks a WTForms field declaration makes.

    Uniqueness and the finer points of email syntax are beyond JSON Schema; the server
    answers 400 for those.
    """
    schema: dict[str, Any] = {}
    for validator in field.kwargs.get("validators", []):
        if isinstance(validator, Length):
            if validator.min > 0:
                schema["minLength"] = validator.min
            if validator.max >= 0:
                schema["maxLength"] = validator.max
        elif isinstance(validator, Regexp):
            # JSON Schema patterns are ECMA-262, where `$` is what Python spells `\Z`.
            schema["pattern"] = validator.regex.pattern.replace(r"\Z", "$")
        elif isinstance(validator, DataRequired):
            schema["minLength"] = max(1, schema.get("minLength", 1))
            schema.setdefault("pattern", r"\S")  # DataRequired refuses blank strings
        elif isinstance(validator, Email):
            schema["format"] = "email"
    return schema


def unicode_text(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError(NOT_TEXT, "not Unicode text") from None
    return value


Text = Annotated[str, AfterValidator(unicode_text)]


def unsent(**kwargs: Any) -> Any:
    """An optional field that, when sent, must still be of its type (null is no string):
    one not sent stays unset (see `Body.sent`)."""
    return Field(None, **kwargs)


def ruled(
    field: FormField, default: Any = ..., description: str | None = None, **extra: Any
) -> Any:
    """A request field checked by `field` of a web form (see the module docstring);
    required unless it has a `default`."""
    return Field(default, description=description, json_schema_extra={**form_rules(field), **extra})


_IGNORED = "Ignored when sent."


def read_only() -> Any:
    """What the API returns in a user but never takes back: a client may PUT the whole
    object it fetched (as the tutorial's client does), and these are skipped."""
    return Field(None, exclude=True, json_schema_extra={"readOnly": True}, description=_IGNORED)


class Body(BaseModel):
    """A JSON request body: only these fields, each a string (no number read as text)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    def sent(self) -> dict[str, str]:
        """The fields the client sent, minus the ignored ones; a null reads as ""."""
        data = self.model_dump(exclude_unset=True)
        return {name: "" if value is None else value for name, value in data.items()}


class UserEcho(Body):
    """The read-only fields of a user, accepted and ignored."""

    id: Any = read_only()
    last_seen: Any = read_only()
    post_count: Any = read_only()
    follower_count: Any = read_only()
    following_count: Any = read_only()
    links: Any = Field(
        None,
        alias="_links",
        exclude=True,
        json_schema_extra={"readOnly": True},
        description=_IGNORED,
    )


class NewUser(UserEcho):
    username: Text = ruled(NewUserForm.username)
    email: Text = ruled(NewUserForm.email)
    password: Text = ruled(NewUserForm.password)
    about_me: Text | None = Field(None, json_schema_extra=form_rules(NewUserForm.about_me))


class UserUpdate(UserEcho):
    """A user as `GET` returned it may be sent back whole: its read-only fields are ignored."""

    username: Text = ruled(AccountForm.username, None)
    email: Text = ruled(
        AccountForm.email,
        None,
        description="A new address needs `current_password`; it takes effect when the link "
        "mailed to it is opened (the current address is told). Until then the user shows the "
        "current address. The current address sent back is no change.",
    )
    about_me: Text | None = Field(None, json_schema_extra=form_rules(AccountForm.about_me))
    current_password: Text = unsent(
        json_schema_extra={"writeOnly": True},
        description="Your password: needed to change the email address.",
    )


class AccountDeletion(Body):
    current_password: Text = ruled(
        DeleteAccountForm.current_password, writeOnly=True, description="Your password."
    )


class NewPost(Body):
    body: Text = ruled(PostForm.post)


class NewTask(Body):
    name: Text = Field(examples=["export_posts"])


class NewUploadTask(BaseModel):
    """A task that reads an uploaded file (multipart/form-data)."""

    name: str = Field(json_schema_extra={"enum": ["import_posts"]})
    file: FileStorage = Field(
        description="Our export (posts.json), a Mastodon archive (.zip) or its outbox.json. "
        "Up to MICROBLOG_IMPORT_MAX_BYTES."
    )
    model_config = ConfigDict(arbitrary_types_allowed=True)


class NewAvatar(BaseModel):
    file: FileStorage = Field(
        description="A PNG, JPEG or WebP picture, up to MICROBLOG_AVATAR_MAX_BYTES."
    )
    model_config = ConfigDict(arbitrary_types_allowed=True)


# --- path and query ---------------------------------------------------------------------


class UserId(BaseModel):
    # Out-of-range ids are a 404 from the view (they exist nowhere), not a validation error.
    id: int = Field(json_schema_extra={"minimum": 1, "maximum": MAX_ID})


class PostId(UserId):
    pass


class TaskId(BaseModel):
    id: str


_DIGITS = re.compile(r"[0-9]+")


def whole_number(name: str, maximum: int, cap: bool = False) -> Callable[[Any], int]:
    """A validator: a positive integer query argument up to `maximum` (or capped to it)."""

    def parse(value: Any) -> int:
        if isinstance(value, int):
            return value  # the default
        if not _DIGITS.fullmatch(value):
            message = _("'%(name)s' must be a whole number from 1.", name=name)
            raise PydanticCustomError(API_MESSAGE, message)
        # Longer digit strings are simply too big (and int() refuses over 4300 digits).
        number = int(value) if len(value) <= 18 else maximum + 1
        if cap:
            number = min(number, maximum)
        if not 1 <= number <= maximum:
            message = _(
                "'%(name)s' must be a whole number from 1 to %(max)s.", name=name, max=maximum
            )
            raise PydanticCustomError(API_MESSAGE, message)
        return number

    return parse


class Paging(BaseModel):
    """`?page=&per_page=` of a collection; any positive per_page is taken, capped as in the
    tutorial."""

    page: Annotated[int, BeforeValidator(whole_number("page", MAX_PAGE))] = Field(
        1, ge=1, le=MAX_PAGE
    )
    per_page: Annotated[int, BeforeValidator(whole_number("per_page", MAX_PER_PAGE, cap=True))] = (
        Field(
            DEFAULT_PER_PAGE,
            ge=1,
            description=f"Items per page; values above {MAX_PER_PAGE} count as {MAX_PER_PAGE}.",
        )
    )


# --- responses --------------------------------------------------------------------------


class Out(BaseModel):
    """A response body: exactly these fields."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True)

    def dump(self) -> dict[str, Any]:
        """The JSON object; optional fields that were not given are left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


Link = Annotated[str, Field(description="A URL path on this server.")]
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class Error(BaseModel):
    error: str = Field(description="The HTTP reason phrase.")
    message: str
    errors: dict[str, list[str]] | SkipJsonSchema[None] = Field(
        None, description="Per-field validation messages (400 only)."
    )


class Token(Out):
    token: str
    expires_at: Timestamp


class UserLinks(Out):
    self: Link
    followers: Link
    following: Link
    posts: Link
    avatar: Link


class User(Out):
    id: int
    username: str
    email: str | SkipJsonSchema[None] = Field(None, description="Only in the owner's own view.")
    about_me: str | None
    last_seen: Timestamp | None
    post_count: int = Field(ge=0)
    follower_count: int = Field(ge=0)
    following_count: int = Field(ge=0)
    links: UserLinks = Field(alias="_links")


class Author(Out):
    id: int
    username: str


class PostLinks(Out):
    self: Link
    author: Link


class Post(Out):
    id: int
    body: str
    timestamp: Timestamp
    language: str | None = Field(
        description="The language the post is written in, as detected when it was posted "
        "(`en`, `es`, …); null when it could not be told (too short, only links) or has not "
        "been looked at yet (an imported post, for a few moments)."
    )
    author: Author
    links: PostLinks = Field(alias="_links")


class TaskLinks(Out):
    self: Link
    cancel: Link
    download: Link | SkipJsonSchema[None] = Field(
        None, description="Present once the export is ready."
    )


class Task(Out):
    id: str
    name: str
    description: str
    status: TaskStatus
    progress: int = Field(ge=0, le=100)
    message: str | None
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    result_size: int | None = Field(ge=0)
    links: TaskLinks = Field(alias="_links")


class TaskConflict(Error):
    task: Task | SkipJsonSchema[None] = None


class PageMeta(Out):
    page: int = Field(ge=1)
    per_page: int = Field(ge=1, le=MAX_PER_PAGE)
    total_pages: int = Field(ge=0)
    total_items: int = Field(ge=0)


class PageLinks(Out):
    self: Link
    next: Link | None
    prev: Link | None


Item = TypeVar("Item", bound=Out)


class Collection(Out, Generic[Item]):
    """A page of a collection: items, _meta and _links (tutorial format)."""

    items: list[Item]
    meta: PageMeta = Field(alias="_meta")
    links: PageLinks = Field(alias="_links")


class UserCollection(Collection[User]):
    pass


class PostCollection(Collection[Post]):
    pass


class TaskCollection(Collection[Task]):
    pass


class ExportedProfile(BaseModel):
    username: str | None = None
    about_me: str | None = None
    avatar: str | None = Field(None, description="file name")


class ExportedPost(BaseModel):
    id: int | None = None
    body: str
    timestamp: Timestamp


class Export(BaseModel):
    """The export file (written by the worker, streamed as it is)."""

    version: int | None = Field(None, examples=[2])
    profile: ExportedProfile | None = None
    posts: list[ExportedPost]
    following: list[str] | None = None


class AnyObject(BaseModel):
    model_config = ConfigDict(extra="allow", title="Object")
