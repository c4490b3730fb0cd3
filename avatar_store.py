"""Where avatars live: the files of each account's picture in the data dir, written once
made (from an upload, or from a remote account's picture) and served from here."""

import os
import time

from flask import Response, current_app, send_from_directory

import avatars
from database import db
from models import User
from task_support import avatars_dir


def send_avatar(file: str) -> Response:
    """An uploaded picture's file, cached for good: its URL changes with the picture."""
    response = send_from_directory(avatars_dir(), file, mimetype="image/webp", max_age=31536000)
    response.cache_control.public = True
    response.cache_control.immutable = True
    return response


def write_avatar(user: User, data: bytes) -> None:
    """Check and convert an uploaded picture, put its files in place, and point the user at
    them (commits). `AvatarError` says why a file is refused."""
    max_bytes = current_app.config["MICROBLOG_AVATAR_MAX_BYTES"]
    pictures = avatars.process_upload(data, max_bytes=max_bytes)
    for size, picture in pictures.items():
        final = avatars_dir() / user.avatar_file(size)
        partial = final.with_name(final.name + ".part")
        partial.write_bytes(picture)
        os.replace(partial, final)  # a page never gets half a picture
    user.set_avatar(max(int(time.time()), (user.avatar_version or 0) + 1))
    db.session.commit()
