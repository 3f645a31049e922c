"""Domain errors and their central mapping to JSON (API) or HTML (pages) responses."""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, jsonify, render_template, request
from flask_limiter.errors import RateLimitExceeded
from werkzeug.exceptions import HTTPException

from app.extensions import limiter
from app.services.i18n import localise_error, t

log = logging.getLogger(__name__)


class DomainError(Exception):
    """A refusal a person can understand. Subclasses fix the HTTP status."""

    status = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ValidationError(DomainError):
    status = 400


class NotFoundError(DomainError):
    status = 404


class PermissionDenied(DomainError):
    status = 403


class ConflictError(DomainError):
    status = 409


class RateLimited(DomainError):
    status = 429


def wants_json() -> bool:
    if request.path.startswith("/api/") or request.path in {"/healthz", "/metrics"}:
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def _visitor_lang() -> str | None:
    """The language of a visitors' page ("ru" unless chosen otherwise); None elsewhere (staff pages).
    Read from the request: an error raised before the blueprint's own hook (a form's CSRF check) finds
    no language in `g`."""
    from app.views.visitors.identity import request_language

    return request_language()[0] if request.blueprint == "visitors" else None


def _message_lang() -> str | None:
    """The language to refuse in, if not the services' English: a visitors' page's, or Russian for a JSON
    request whose Accept-Language prefers it (a city app shows the sentence to its user)."""
    if wants_json():
        if request.accept_languages and request.accept_languages.best_match(("en", "ru")) == "ru":
            return "ru"
        return None
    return _visitor_lang()


def _respond(status: int, message: str, field: str | None = None, ours: bool = True) -> tuple[Response | str, int]:
    lang = _message_lang()
    if lang is not None:
        message = localise_error(message, lang, status, ours)
    if wants_json():
        body: dict[str, object] = {"error": message, "status": status}
        if field:
            body["field"] = field
        return jsonify(body), status
    key = "error_not_found" if status == 404 else "error_service" if status >= 500 else "error_refused"
    page_lang = lang or "en"
    return render_template(
        "error.html",
        status=status,
        message=message,
        heading=t(key, page_lang),
        home=t("home", page_lang),
        lang=page_lang,
    ), status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def handle_domain_error(exc: DomainError) -> tuple[Response | str, int]:
        return _respond(exc.status, exc.message, exc.field)

    @app.errorhandler(RateLimitExceeded)
    def handle_rate_limited(exc: RateLimitExceeded) -> tuple[Response | str, int]:
        # Flask-Limiter's own text is the limit ("2 per 1 hour"); say what to do instead, in the visitor's
        # language on their pages. The Retry-After header (headers_enabled) carries the same time.
        current = limiter.current_limit
        wait_s = current.reset_at - time.time() if current is not None else exc.limit.limit.get_expiry()
        minutes = max(1, round(wait_s / 60))
        return _respond(429, t("rate_limited", _message_lang() or "en", minutes=minutes))

    @app.errorhandler(HTTPException)
    def handle_http_error(exc: HTTPException) -> tuple[Response | str, int]:
        status = exc.code or 500
        return _respond(status, exc.description or exc.name, ours=False)

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception) -> tuple[Response | str, int]:
        if is_transient_database_error(exc):
            # Two requests waited for each other (the database chose this one to give up) or the
            # database was busy: nothing was written, and the same request will work when sent again.
            log.warning("database busy on %s %s: %s", request.method, request.path, type(exc).__name__)
            return _respond(503, "The service is busy; please try again in a moment.")
        # The visitor gets a plain sentence; the log gets the traceback (without request data).
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _respond(500, "Something went wrong on our side. Please try again in a minute.")


# PostgreSQL: serialization failure, deadlock detected, lock not available.
_TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03"}


def is_transient_database_error(exc: BaseException) -> bool:
    """An error that says "try again", not "this is wrong": a lost race in PostgreSQL, or SQLite's lock."""
    for error in (exc, getattr(exc, "orig", None), exc.__cause__):
        if error is None:
            continue
        if getattr(error, "sqlstate", None) in _TRANSIENT_SQLSTATES:
            return True
        if type(error).__name__ == "OperationalError" and "database is locked" in str(error):
            return True
    return False
