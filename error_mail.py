"""Logging to stderr, and error reports mailed to the admins at most once per error."""

import logging
import sys
import time
from logging.handlers import SMTPHandler

from flask import Flask

# The same error is mailed to the admins at most once in this many seconds (per process).
ERROR_MAIL_INTERVAL = 300


def configure_logging(app: Flask) -> None:
    """Log to stderr; mail errors to ADMINS in production when mail is configured."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            stream=sys.stderr,
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    # Flask's logger is shared by every app of this name: replace, don't stack, the handler.
    for handler in [h for h in app.logger.handlers if isinstance(h, SMTPHandler)]:
        app.logger.removeHandler(handler)
    if app.debug or app.testing or not app.config["MAIL_SERVER"] or not app.config["ADMINS"]:
        return
    credentials = None
    if app.config["MAIL_USERNAME"]:
        credentials = (app.config["MAIL_USERNAME"], app.config["MAIL_PASSWORD"])
    handler = SMTPHandler(
        mailhost=(app.config["MAIL_SERVER"], app.config["MAIL_PORT"]),
        fromaddr=app.config["MAIL_DEFAULT_SENDER"],
        toaddrs=app.config["ADMINS"],
        subject="Microblog failure",
        credentials=credentials,
        secure=() if app.config["MAIL_USE_TLS"] else None,
    )
    handler.setLevel(logging.ERROR)
    handler.addFilter(OncePerInterval(ERROR_MAIL_INTERVAL))
    app.logger.addHandler(handler)


class OncePerInterval(logging.Filter):
    """Lets a record through once per `interval` seconds per distinct error: a flood of
    failing requests sends one mail, not one each.

    Kept in memory, not in the database: the database may be what is failing.
    """

    def __init__(self, interval: float):
        super().__init__()
        self.interval = interval
        self.last_sent: dict[tuple, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = self.error_key(record)
        now = time.monotonic()
        if now - self.last_sent.get(key, -self.interval) < self.interval:
            return False
        self.last_sent[key] = now
        return True

    @staticmethod
    def error_key(record: logging.LogRecord) -> tuple:
        """What makes two errors the same: the exception's type and where it was raised
        (else the log message's template and where it was logged)."""
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            traceback = error.__traceback__
            while traceback is not None and traceback.tb_next is not None:
                traceback = traceback.tb_next
            where = (
                (traceback.tb_frame.f_code.co_filename, traceback.tb_lineno) if traceback else ()
            )
            return (type(error).__name__, *where)
        return (str(record.msg), record.pathname, record.lineno)
