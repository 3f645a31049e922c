"""Security headers on every response."""

from __future__ import annotations

from flask.testing import FlaskClient


def test_pages_carry_a_strict_content_security_policy(client: FlaskClient) -> None:
    response = client.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_errors_carry_the_headers_too(client: FlaskClient) -> None:
    response = client.get("/api/v1/does-not-exist")
    assert response.status_code == 404
    assert "Content-Security-Policy" in response.headers


def test_session_cookie_is_http_only_and_same_site(client: FlaskClient) -> None:
    app = client.application
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_oversized_request_bodies_are_refused(client: FlaskClient) -> None:
    response = client.post(
        "/api/v1/openapi.json", data=b"x" * (3 * 1024 * 1024), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
