"""Hostile inputs against the operators' API as a signed-in operator, generated from its OpenAPI description.

Signed in, the inputs reach the services (ids, numbers, names, formats), not just the 401 guard.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import create_app
from app.models import Operator
from tests import factories
from tests.app.operators.conftest import signed_in_client
from tests.conftest import settings_for

_SPEC_APP = create_app(settings_for("sqlite://"))
_SCHEMA = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", _SPEC_APP)
OPERATIONS = [op for op in (r.ok() for r in _SCHEMA.get_all_operations()) if " /api/v1/operator/" in op.label]


def test_every_operator_operation_is_in_the_battery() -> None:
    assert len(OPERATIONS) >= 17


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_signed_in_operator_gets_no_5xx_and_no_off_schema_answer(
    operation: Any, app: Flask, db: Any, operator: Operator
) -> None:
    factories.venue(operator.organisation, halls=("Зал",))
    db.session.commit()
    cookie = signed_in_client(app, operator).get_cookie("session")
    assert cookie is not None
    headers = {"Cookie": f"session={cookie.value}"}

    @given(data=st.data())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy())
        case.call_and_validate(app=app, base_url="http://checkin.test", headers=headers)

    run()
