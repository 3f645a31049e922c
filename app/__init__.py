"""The Flask service: create_app wires configuration, extensions, blueprints, errors and CLI."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response
from flask.json.provider import DefaultJSONProvider
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer
from werkzeug.routing import IntegerConverter

import app.models  # noqa: F401  (one complete metadata for Alembic)
from app import rate_limits  # registers the database:// rate-limit storage
from app.config import ConfigError, load_config
from app.errors import register_error_handlers
from app.extensions import csrf, db, limiter, migrate
from app.logs import configure_logging
from app.metrics import init_metrics
from app.models import MAX_ROW_ID
from app.security import init_security_headers
from app.services.personal_data import Keyring

__all__ = ["ConfigError", "create_app"]


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build the app. Wiring only: no database I/O, no scheduler, no network.

    Raises ConfigError (one readable line) when the configuration cannot work.
    """
    app = Flask(__name__, instance_relative_config=True)
    app.json = BoundedJSONProvider(app)
    app.session_interface = ReusedSerializerSessionInterface()
    app.url_map.converters["int"] = RowIdConverter
    config = load_config(overrides=overrides, instance_path=app.instance_path)
    app.config.update(config)
    app.config["SQLALCHEMY_DATABASE_URI"] = config["DATABASE_URL"]
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = _engine_options(config["DATABASE_URL"])
    app.config["TESTING"] = config["APP_ENV"] == "testing" or bool(app.config.get("TESTING"))
    if app.config.get("MAX_CONTENT_LENGTH") is None:
        app.config["MAX_CONTENT_LENGTH"] = 2 * 1024 * 1024  # posters, CSV imports and kiosk batches fit
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_SECURE"] = config["PUBLIC_BASE_URL"].startswith("https://")
    try:
        app.extensions["keyring"] = Keyring.from_config(config["DATA_ENCRYPTION_KEYS"], config["LOOKUP_HASH_KEY"])
    except ValueError as exc:
        raise ConfigError(f"DATA_ENCRYPTION_KEYS / LOOKUP_HASH_KEY are not valid: {exc}") from None

    configure_logging(config["LOG_FORMAT"], config["LOG_LEVEL"])
    db.init_app(app)
    migrate.init_app(app, db, directory=str(_migrations_dir()), render_as_batch=True, compare_type=True)
    csrf.init_app(app)
    if config["APP_ENV"] == "production" and config["RATELIMIT_STORAGE_URI"].startswith("memory://"):
        logging.getLogger(__name__).warning(
            "RATELIMIT_STORAGE_URI=memory:// counts per process: with N workers each limit lets N times as many"
            " requests through, and a restart forgets them (the default database:// shares the counts)"
        )
    if config["RATELIMIT_STORAGE_URI"] == rate_limits.SCHEME:
        app.config["RATELIMIT_STORAGE_OPTIONS"] = {
            "database_url": config["DATABASE_URL"],
            "key_secret": config["LOOKUP_HASH_KEY"],  # counters are stored under keyed hashes of their keys
        }
    limiter.init_app(app)
    init_metrics(app)
    init_security_headers(app)
    register_error_handlers(app)
    _register_unit_of_work(app)
    _register_blueprints(app)

    from app.cli import register_cli

    register_cli(app)
    return app


class RowIdConverter(IntegerConverter):
    """`<int:...>` in routes: ids are INTEGER columns, so a number past their range becomes 0, which no row
    has, and the route answers its own "not found" rather than the driver's overflow or PostgreSQL's
    "integer out of range" (a 500). Refusing it in the router instead would answer 405 to some methods."""

    def to_python(self, value: str) -> int:
        number = int(value)
        return number if number <= MAX_ROW_ID else 0


class ReusedSerializerSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, except that the signing serializer is built once per set of keys
    instead of on every request (building it was about 4% of a small request's CPU). Changing
    SECRET_KEY or its fallbacks, as tests do, builds a new one."""

    def __init__(self) -> None:
        self._serializer: tuple[tuple[Any, ...], URLSafeTimedSerializer | None] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        cached = self._serializer
        if cached is None or cached[0] != keys:
            cached = self._serializer = (keys, super().get_signing_serializer(app))
        return cached[1]


class BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, except that a body nested too deeply for the parser is bad JSON (a 400 from the
    views' checks) rather than a RecursionError (a 500)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def _migrations_dir() -> Any:
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "migrations"


def _engine_options(url: str) -> dict[str, Any]:
    # A database error's text names its statement's values (a message body with a sign-in code, a
    # hash, a ciphertext); that text reaches the logs with the traceback, so it shows the SQL alone.
    hidden = {"hide_parameters": True}
    if url.startswith("sqlite"):
        # WAL lets readers run beside the one writer; the busy timeout waits out short write locks.
        return {**hidden, "connect_args": {"timeout": 15}}
    # No pool_pre_ping: its "SELECT 1" costs a round trip per request; app/extensions.py checks a pooled
    # connection's socket instead (_postgres_alive).
    options: dict[str, Any] = {**hidden, "pool_size": 10, "max_overflow": 10}
    if "options=" not in url:
        # Sessions in UTC whatever the server's default zone: SQL that turns a timestamptz into a date
        # or text means the same on every server, and psycopg then hands back times in the one
        # `datetime.UTC` object, which Python converts and compares without consulting a zone database.
        # A startup parameter: no extra round trip.
        # No JIT compilation: it is meant for long analytical queries, and the matching job's batch queries,
        # costed above jit_above_cost, spent about 10 ms compiling each one to save less than that.
        options["connect_args"] = {"options": "-c TimeZone=UTC -c jit=off"}
    return options


def _register_unit_of_work(app: Flask) -> None:
    """The request is the transaction: commit once after a successful response, else roll back.

    Services only flush, so a view can never leave half of its work committed.
    """

    @app.after_request
    def _commit(response: Response) -> Response:
        # A request that never touched the database (static files, health, most GETs of the session's
        # own data) has nothing to commit: creating a session only to commit nothing costs about a
        # tenth of a small request.
        if not db.session.registry.has() or not db.session().in_transaction():
            return response
        if response.status_code < 400:
            db.session.commit()
        else:
            db.session.rollback()
        return response

    @app.teardown_request
    def _rollback(exc: BaseException | None) -> None:
        if exc is not None:
            db.session.rollback()


def _register_blueprints(app: Flask) -> None:
    from app.views import (
        api_docs,
        gateway,
        health,
        home,
        kiosk_api,
        me_api,
        officials,
        operators,
        operators_api,
        posters,
        visitors,
        visitors_api,
    )

    for module in (health, home, api_docs, operators, posters, visitors, officials):
        app.register_blueprint(module.bp)
    # Machine-to-machine endpoints authenticate with tokens or shared secrets, not cookies,
    # so CSRF tokens do not apply to them.
    for module in (operators_api, visitors_api, me_api, kiosk_api, gateway):
        csrf.exempt(module.bp)
        app.register_blueprint(module.bp)
