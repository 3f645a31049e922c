"""Hostile-input battery over the whole JSON API, generated from the service's own OpenAPI description.

Every documented operation is called with schema-generated inputs: the service must never answer 5xx,
and what it answers must match what the description promises.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app import create_app
from app.openapi import build_spec
from tests.conftest import settings_for

# Built once at import so each operation becomes its own test; it reads the spec, not the database.
_SPEC_APP = create_app(settings_for("sqlite://"))
_SCHEMA = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", _SPEC_APP)
OPERATIONS = [result.ok() for result in _SCHEMA.get_all_operations()]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_the_description_is_valid_openapi_and_lists_the_api() -> None:
    spec = build_spec("http://checkin.test/api/v1")
    assert spec["openapi"].startswith("3.")
    assert len(OPERATIONS) >= 1


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_no_operation_answers_5xx_or_off_schema(operation: Any, app: Flask, db: Any) -> None:
    @given(data=st.data())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy())
        # Business validation (a string that is not a phone number) is allowed to refuse schema-valid
        # input with a 4xx, so "positive data acceptance" is not among the checks.
        case.call_and_validate(app=app, checks=CHECKS)

    run()


KIOSK_OPERATIONS = [op for op in OPERATIONS if op.path in ("/api/v1/kiosk/checkins", "/api/v1/kiosk/heartbeat")]


@pytest.mark.parametrize("operation", KIOSK_OPERATIONS, ids=lambda op: op.label)
def test_an_enrolled_kiosk_gets_no_5xx_and_no_off_schema_answer(operation: Any, app: Flask, db: Any) -> None:
    # Without a credential these operations stop at 401; with one, the items themselves are parsed.
    from datetime import timedelta

    from app.models import utcnow
    from tests import factories
    from tests.app.kiosks.conftest import enrol_kiosk

    kiosk = enrol_kiosk(factories.venue(), utcnow() - timedelta(hours=1))
    db.session.commit()

    @given(data=st.data())
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy())
        case.headers = {**(case.headers or {}), **kiosk.headers}
        case.call_and_validate(app=app, checks=CHECKS)

    run()
