"""Fixtures for the operator tests: an organisation with its owner, and a client signed in as them."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from app.extensions import limiter
from app.models import Operator
from app.services import accounts
from app.views.operators import sign_in

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    # Limits are per client address and every test client is 127.0.0.1: start each test from zero.
    limiter.reset()


@pytest.fixture
def operator(db: Any) -> Operator:
    """Committed (to the test's savepoint): a request answering 4xx rolls back only its own work."""
    owner = accounts.create_organisation_with_owner("Сеть кофеен «Ромашка»", "owner@romashka.example", PASSWORD)
    db.session.commit()
    return owner


def signed_in_client(app: Any, operator: Operator) -> FlaskClient:
    client = app.test_client()
    with app.test_request_context(), client.session_transaction() as sess:
        sign_in(operator)
        from flask import session

        sess.update(dict(session))
    return client


@pytest.fixture
def op_client(app: Any, operator: Operator) -> FlaskClient:
    return signed_in_client(app, operator)
