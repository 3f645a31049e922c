"""Health check, metrics and the central error mapping."""

from __future__ import annotations

from flask.testing import FlaskClient


def test_healthz_reports_database_ok(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_metrics_are_in_prometheus_format_and_count_requests(client: FlaskClient) -> None:
    client.get("/healthz")
    body = client.get("/metrics").get_data(as_text=True)
    assert "# TYPE checkin_http_requests_total counter" in body
    assert 'checkin_http_requests_total{endpoint="health.healthz",method="GET",status="200"}' in body


def test_unknown_api_route_answers_json_404(client: FlaskClient) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.get_json()["status"] == 404


def test_unknown_page_answers_a_readable_html_404(client: FlaskClient) -> None:
    response = client.get("/nothing-here", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert b"Not found" in response.data
    assert b"Traceback" not in response.data


def test_home_page_tells_visitors_how_to_check_in(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert b"7377" in response.data
