"""Security headers on every response: a strict content security policy and friends."""

from __future__ import annotations

import itertools

from flask import Flask, Response, abort, request

# No inline scripts or styles anywhere: pages load only their own static files. form-action 'self'
# also covers redirects after a form post in Chromium, so sign-in with an external provider starts
# from a link (GET), not from a form.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)

_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def init_security_headers(app: Flask) -> None:
    is_https = app.config["PUBLIC_BASE_URL"].startswith("https://")

    @app.before_request
    def _refuse_oversized() -> None:
        # Werkzeug enforces MAX_CONTENT_LENGTH only when a view reads the body; refuse before routing.
        limit = app.config.get("MAX_CONTENT_LENGTH")
        if limit and request.content_length is not None and request.content_length > limit:
            abort(413, "The request is too large.")

    @app.before_request
    def _refuse_nul_characters() -> None:
        # PostgreSQL cannot store U+0000 in text (the driver raises: a 500), and no field needs one.
        fields = request.args.items(multi=True)
        if request.mimetype in _FORM_TYPES:  # only these bodies have form fields: JSON is not parsed here
            fields = itertools.chain(fields, request.form.items(multi=True))
        if any("\x00" in value for _, value in fields):
            abort(400, "A field contains a NUL character.")

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        # Poster and kiosk tokens travel in URLs: never leak them to other sites.
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Permissions-Policy", "geolocation=(), microphone=(), camera=()")
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if is_https:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return response
