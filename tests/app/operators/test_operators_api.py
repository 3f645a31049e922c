"""The operators' JSON API: session sign-in, venues, entrances, posters, kiosks, and its guards."""

from __future__ import annotations

import io
from typing import Any

import pypdf
import pytest
from flask.testing import FlaskClient

from app.models import Operator, Venue
from app.openapi import build_spec
from app.services import posters
from tests import factories
from tests.app.operators.conftest import PASSWORD


def test_session_sign_in_and_venue_lifecycle(client: FlaskClient, operator: Operator, db: Any) -> None:
    assert client.get("/api/v1/operator/venues").status_code == 401
    login = client.post("/api/v1/operator/session", json={"email": "owner@romashka.example", "password": PASSWORD})
    assert login.status_code == 200 and login.json["role"] == "owner"
    created = client.post(
        "/api/v1/operator/venues",
        json={"name": "Библиотека № 5", "kind": "education", "capacity": 40, "entrances": ["Вход", "Читальный зал"]},
    )
    assert created.status_code == 201, created.json
    venue_id = created.json["id"]
    assert len(created.json["short_code"]) == 9 and [e["name"] for e in created.json["entrances"]] == [
        "Вход",
        "Читальный зал",
    ]
    patched = client.patch(f"/api/v1/operator/venues/{venue_id}", json={"default_stay_minutes": 45})
    assert patched.status_code == 200 and patched.json["default_stay_minutes"] == 45
    bad = client.patch(f"/api/v1/operator/venues/{venue_id}", json={"default_stay_minutes": 2000})
    assert bad.status_code == 400 and bad.json["field"] == "default_stay_minutes"
    assert db.session.get(Venue, venue_id).default_stay_minutes == 45
    entrance = client.post(f"/api/v1/operator/venues/{venue_id}/entrances", json={"name": "Зал 2", "kind": "hall"})
    assert entrance.status_code == 201 and entrance.json["kind"] == "hall"
    stats = client.get(f"/api/v1/operator/venues/{venue_id}/stats").json
    assert stats["present"] == 0 and stats["capacity"] == 40 and len(stats["hourly"]) == 72
    archived = client.post(f"/api/v1/operator/venues/{venue_id}/archive", json={})
    assert archived.json["archived"] is True
    assert client.get("/api/v1/operator/venues").json["venues"] == []
    assert client.delete("/api/v1/operator/session", json={}).status_code == 204
    assert client.get("/api/v1/operator/venues").status_code == 401


def test_writes_must_be_json(client: FlaskClient, operator: Operator, db: Any) -> None:
    form = client.post("/api/v1/operator/session", data={"email": "owner@romashka.example", "password": PASSWORD})
    assert form.status_code == 415 and "application/json" in form.json["error"]
    client.post("/api/v1/operator/session", json={"email": "owner@romashka.example", "password": PASSWORD})
    sneaky = client.post("/api/v1/operator/venues", data={"name": "x"}, content_type="text/plain")
    assert sneaky.status_code == 415
    assert db.session.query(Venue).count() == 0
    assert client.post("/api/v1/operator/venues", json=["not", "an", "object"]).status_code == 400
    assert client.post("/api/v1/operator/venues", json={"name": "x", "capacity": "ten"}).status_code == 400


@pytest.mark.parametrize("timezone", ["Europe", "Europe/", "x" * 300, "../../etc/passwd", "Europe/Moscow\x00"])
def test_a_time_zone_that_is_no_zone_is_refused_with_a_message(
    client: FlaskClient, operator: Operator, db: Any, timezone: str
) -> None:
    # "Europe" is a directory of the zone database, 300 characters too long a file name: both used to be 500s.
    client.post("/api/v1/operator/session", json={"email": "owner@romashka.example", "password": PASSWORD})
    response = client.post("/api/v1/operator/venues", json={"name": "Cafe", "timezone": timezone})
    assert response.status_code == 400
    assert "Unknown time zone" in response.json["error"]
    assert client.get("/api/v1/operator/venues").json["venues"] == []


def test_api_login_is_rate_limited(client: FlaskClient, operator: Operator) -> None:
    body = {"email": "owner@romashka.example", "password": "wrong password"}
    statuses = [client.post("/api/v1/operator/session", json=body).status_code for _ in range(11)]
    assert statuses == [401] * 10 + [429]


def test_posters_reissue_pairing_and_kiosks(client: FlaskClient, operator: Operator, db: Any, now: Any) -> None:
    venue = factories.venue(operator.organisation, name="Кафе «API»")
    entrance = venue.entrances[0]
    db.session.commit()
    client.post("/api/v1/operator/session", json={"email": "owner@romashka.example", "password": PASSWORD})
    pdf = client.get(f"/api/v1/operator/entrances/{entrance.id}/poster?format=pdf&size=A4")
    assert pdf.status_code == 200 and "Кафе «API»" in pypdf.PdfReader(io.BytesIO(pdf.data)).pages[0].extract_text()
    assert client.get(f"/api/v1/operator/entrances/{entrance.id}/poster?format=svg").mimetype == "image/svg+xml"
    reissued = client.post(f"/api/v1/operator/entrances/{entrance.id}/poster/reissue", json={})
    assert reissued.status_code == 201 and reissued.json["version"] == 2
    token = reissued.json["url"].rsplit("/", 1)[1]
    assert posters.resolve_poster_token(token, now).entrance.id == entrance.id
    assert reissued.json["verify_url"] == f"http://checkin.test/verify/{token}"
    code = client.post(f"/api/v1/operator/entrances/{entrance.id}/pairing-codes", json={})
    assert code.status_code == 201 and len(code.json["code"]) == 14
    assert client.get("/api/v1/operator/kiosks").json == {"kiosks": []}
    batch = client.get("/api/v1/operator/posters?format=zip")
    assert batch.status_code == 200 and batch.mimetype == "application/zip"


def test_other_organisations_records_are_404(client: FlaskClient, operator: Operator, db: Any) -> None:
    foreign = factories.venue(factories.organisation("Чужие"))
    db.session.commit()
    client.post("/api/v1/operator/session", json={"email": "owner@romashka.example", "password": PASSWORD})
    entrance_id = foreign.entrances[0].id
    assert client.get(f"/api/v1/operator/venues/{foreign.id}").status_code == 404
    assert client.patch(f"/api/v1/operator/venues/{foreign.id}", json={"name": "mine"}).status_code == 404
    assert client.post(f"/api/v1/operator/venues/{foreign.id}/archive", json={}).status_code == 404
    assert client.get(f"/api/v1/operator/entrances/{entrance_id}/poster").status_code == 404
    assert client.post(f"/api/v1/operator/entrances/{entrance_id}/poster/reissue", json={}).status_code == 404
    assert client.post(f"/api/v1/operator/entrances/{entrance_id}/pairing-codes", json={}).status_code == 404
    assert foreign.name == "Кафе «Тест»" and foreign.archived_at is None


def test_every_operator_api_route_is_documented(app: Any) -> None:
    spec = build_spec("http://checkin.test/api/v1")
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("operators_api."):
            continue
        path = rule.rule.replace("<int:", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in documented, (path, method)


def test_out_of_range_ids_are_404_not_500(client: FlaskClient, operator: Operator, db: Any) -> None:
    client.post("/api/v1/operator/session", json={"email": "owner@romashka.example", "password": PASSWORD})
    for huge in ("3000000000", "99999999999999999999"):
        assert client.get(f"/api/v1/operator/venues/{huge}").status_code == 404
        assert client.get(f"/api/v1/operator/entrances/{huge}/poster").status_code == 404
        assert client.post(f"/api/v1/operator/kiosks/{huge}/revoke", json={}).status_code == 404
        assert client.get(f"/operator/venues/{huge}").status_code == 404
