"""The access matrix (docs/access-matrix.md), walked route by route with every role.

Every route of the app must appear in MATRIX, so a new route cannot ship without a decision about who
may use it. For each route, every role not allowed must be refused (401/403, a 404 that hides the
object, or a redirect to a sign-in page) and every allowed role must not be.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.extensions import limiter
from app.models import Notice, NoticeKind, OfficialRole
from app.services import accounts, kiosk_sync, kiosks, people, posters, sign_in
from app.views import operators as operator_views
from app.views.visitors import DEVICE_COOKIE, _serializer
from tests import factories
from tests.app.officials.helpers import make_official
from tests.conftest import settings_for

ANON, VISITOR, OPERATOR, OFFICIAL, SUPERVISOR, KIOSK, GATEWAY = (
    "anonymous", "visitor", "operator", "official", "supervisor", "kiosk", "gateway",
)  # fmt: skip
ROLES = (ANON, VISITOR, OPERATOR, OFFICIAL, SUPERVISOR, KIOSK, GATEWAY)
EVERYONE = frozenset(ROLES)
STAFF_OFFICIALS = frozenset({OFFICIAL, SUPERVISOR})

# endpoint -> roles that may use it. Public entry points (sign-in forms, the poster page) are open
# to everyone; what they show depends only on the requester's own identity.
MATRIX: dict[str, frozenset[str]] = {
    "home.index": EVERYONE,
    "health.healthz": EVERYONE,
    "health.metrics": EVERYONE,  # system operators scrape it; no personal data (network-restricted in production)
    "api_docs.openapi": EVERYONE,
    "posters.verify": EVERYONE,
    "visitors.poster": EVERYONE,
    "visitors.kiosk_code": EVERYONE,
    "visitors.kiosk_here": EVERYONE,
    "visitors.code_form": EVERYONE,
    "visitors.request_code": EVERYONE,
    "visitors.confirm_code": EVERYONE,
    "visitors.mos_start": EVERYONE,
    "visitors.mos_callback": EVERYONE,
    "visitors.me": EVERYONE,  # a signed-out browser gets the sign-in prompt
    "visitors.check_in": frozenset({VISITOR}),  # signed-out browsers are sent back to the poster page
    "visitors.visit": frozenset({VISITOR}),
    "visitors.visit_checkout": frozenset({VISITOR}),
    "visitors.visit_correct": frozenset({VISITOR}),
    "visitors.device_revoke": frozenset({VISITOR}),
    "visitors.erase_confirm": frozenset({VISITOR}),
    "visitors.erase": frozenset({VISITOR}),
    "visitors.notice_read": frozenset({VISITOR}),
    "visitors.me_qr": frozenset({VISITOR}),
    "visitors.bluetooth_off": frozenset({VISITOR}),
    "visitors_api.request_code": EVERYONE,
    "visitors_api.confirm_code": EVERYONE,
    "visitors_api.check_in": frozenset({VISITOR}),
    "visitors_api.check_out": frozenset({VISITOR}),
    "visitors_api.my_visits": frozenset({VISITOR}),
    "operators.login": EVERYONE,
    "operators.signup": EVERYONE,
    "operators.accept_invitation": EVERYONE,
    "operators_api.login": EVERYONE,
    "operators_api.logout": EVERYONE,  # signing out is harmless for anyone
    "operators.logout": EVERYONE,
    "officials.logout": EVERYONE,
    "officials.login": EVERYONE,
    "officials.switch": frozenset({SUPERVISOR}),
    "officials.reveal": frozenset({SUPERVISOR}),  # the supervisor here holds the reveal grant
    "kiosk_api.enrol": EVERYONE,  # the pairing code is the credential
    "kiosk_api.checkins": frozenset({KIOSK}),
    "kiosk_api.heartbeat": frozenset({KIOSK}),
    "gateway.sms_delivery_report": frozenset({GATEWAY}),
    "gateway.sms_incoming": frozenset({GATEWAY}),
}
DEFAULT_BY_BLUEPRINT = {
    "operators": frozenset({OPERATOR}),
    "operators_api": frozenset({OPERATOR}),
    "officials": STAFF_OFFICIALS,
    "me_api": frozenset({VISITOR}),  # the visitor's own account in the JSON API
}


# Form fields a route needs before it even looks at who is asking.
FORM_BODIES = {"visitors.check_in": {"place": "/p/{token}"}}


def allowed_roles(endpoint: str) -> frozenset[str] | None:
    if endpoint in MATRIX:
        return MATRIX[endpoint]
    return DEFAULT_BY_BLUEPRINT.get(endpoint.split(".", 1)[0])


@pytest.fixture(scope="module")
def matrix_app(database_url: str) -> Flask:
    # CSRF has its own tests; here it would only hide the access decision. (Rate limits stay on: the
    # limiter is one object shared by every app in the process, so switching it off here would
    # switch it off for the tests that prove the limits.)
    return create_app(settings_for(database_url, WTF_CSRF_ENABLED=False))


def _routes() -> list[tuple[str, str, str]]:
    app = create_app(settings_for("sqlite://"))
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((rule.endpoint, method, rule.rule))
    return sorted(found)


ROUTES = _routes()


def test_every_route_has_an_access_decision() -> None:
    undecided = sorted({endpoint for endpoint, _, _ in ROUTES if allowed_roles(endpoint) is None})
    assert undecided == []


@dataclass
class World:
    values: dict[str, Any]
    clients: dict[str, FlaskClient]
    secrets: dict[str, str]


@pytest.fixture
def world(matrix_app: Flask, db: Any, now: datetime) -> Iterator[World]:
    limiter.reset()
    owner = accounts.create_organisation_with_owner("Матрица", "owner@matrix.example", "long-enough-password")
    venue = factories.venue(owner.organisation)
    entrance = venue.entrances[0]
    _, poster_token = posters.issue_poster(entrance, now)
    visitor, _ = people.get_or_create_by_phone("+79160000001", now)
    device_token = sign_in.remember_device(visitor, now)
    visit = factories.checkin(visitor, venue, now - timedelta(minutes=10), minutes=None)  # still there
    notice = Notice(person_id=visitor.id, checkin_id=visit.id, kind=NoticeKind.EXPOSURE, risk="low",
                    body_ru="…", body_en="…", created_at=now)  # fmt: skip
    db.session.add(notice)
    sick, _ = people.get_or_create_by_phone("+79160000002", now)
    official = make_official(now, OfficialRole.OFFICIAL, can_reveal=False)
    supervisor = make_official(now, OfficialRole.SUPERVISOR, can_reveal=True)
    case = factories.case(sick, now, now)
    enrolment = kiosk_sync.enrol(kiosks.create_pairing_code(entrance.id, now), now)
    db.session.commit()

    clients = {role: matrix_app.test_client() for role in ROLES}
    clients[VISITOR].set_cookie(DEVICE_COOKIE, _with_app(matrix_app, lambda: _serializer().dumps(device_token)))
    with matrix_app.test_request_context(), clients[OPERATOR].session_transaction() as sess:
        operator_views.sign_in(owner)
        from flask import session

        sess.update(dict(session))
    for role, who in ((OFFICIAL, official), (SUPERVISOR, supervisor)):
        with clients[role].session_transaction() as sess:
            sess["official_id"] = who.id
            sess["official_seen"] = time.time()
    values = {
        "venue_id": venue.id, "entrance_id": entrance.id, "kiosk_id": enrolment.kiosk.id, "case_id": case.id,
        "person_id": sick.id, "checkin_id": visit.id, "notice_id": notice.id,
        "device_id": sign_in.devices_of(visitor)[0].id, "token": poster_token, "code": "x", "fmt": "pdf",
        "archive": "zip",
    }  # fmt: skip
    secrets = {"kiosk": enrolment.credential, "gateway": matrix_app.config["SMS_INBOUND_SECRET"],
               "visitor_bearer": device_token}  # fmt: skip
    yield World(values, clients, secrets)


def _with_app(app: Flask, func: Any) -> Any:
    with app.app_context():
        return func()


def _path(rule: str, values: dict[str, Any]) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m.group(1)]), rule)


def _refused(response: Any) -> bool:
    if response.status_code in (401, 403, 404):
        return True
    if response.status_code in (301, 302, 303, 307, 308):
        location = response.headers.get("Location", "")
        # Sign-in pages, or the poster page where a visitor's sign-in starts.
        return "/login" in location or "/signin" in location or "/p/" in location
    return False


def _call(world: World, role: str, method: str, path: str, endpoint: str) -> Any:
    client = world.clients[role]
    headers: dict[str, str] = {}
    query = ""
    if role == KIOSK:
        headers["Authorization"] = f"Bearer {world.secrets['kiosk']}"
    if role == VISITOR and endpoint.startswith(("visitors_api.", "me_api.")):
        headers["Authorization"] = f"Bearer {world.secrets['visitor_bearer']}"
    if role == GATEWAY:
        query = f"?secret={world.secrets['gateway']}"
    if endpoint in FORM_BODIES:
        form = {k: v.format(**world.values) for k, v in FORM_BODIES[endpoint].items()}
        return client.open(path + query, method=method, data=form, headers=headers)
    body = None if method == "GET" else {}
    return client.open(path + query, method=method, json=body, headers=headers)


@pytest.mark.parametrize(("endpoint", "method", "rule"), ROUTES, ids=[f"{m} {r}" for _, m, r in ROUTES])
def test_route_admits_exactly_its_roles(world: World, endpoint: str, method: str, rule: str) -> None:
    allowed = allowed_roles(endpoint)
    assert allowed is not None
    path = _path(rule, world.values)
    # Allowed roles last: an allowed call may sign out or erase, which must not disturb the others.
    for role in sorted(ROLES, key=lambda r: r in allowed):
        response = _call(world, role, method, path, endpoint)
        assert response.status_code < 500, (role, response.status_code)
        if allowed == EVERYONE:
            continue  # public: its own logic may still say no (wrong password, unknown code)
        if role in allowed:
            assert not _refused(response), f"{role} was refused: {response.status_code}"
        else:
            assert _refused(response), f"{role} was let in: {response.status_code}"
