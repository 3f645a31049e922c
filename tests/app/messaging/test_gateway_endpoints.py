"""The endpoints Kannel calls: delivery reports and incoming SMS."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.models import MessageStatus, OutboxMessage
from app.services.dispatch import DispatchSettings, dispatch_once
from tests.app.messaging.conftest import (
    INBOUND_SECRET,
    IncomingRecorder,
    ScriptedChannels,
    queue,
    stand_in_for_sms_commands,
)


def sent_message(db: Any, app: Flask, now: datetime, key: str = "dlr1") -> OutboxMessage:
    message = queue(now, key=key)
    dispatch_once(now, DispatchSettings(), ScriptedChannels(app.config))
    db.session.expire_all()
    return message


def status_of(db: Any, message: OutboxMessage) -> OutboxMessage:
    db.session.expire_all()
    row = db.session.get(OutboxMessage, message.id)
    assert row is not None
    return row


def test_delivery_report_marks_the_message_delivered(client: FlaskClient, db: Any, app: Flask, now: datetime) -> None:
    message = sent_message(db, app, now)
    response = client.get(
        "/gateway/sms/dlr",
        query_string={"secret": INBOUND_SECRET, "ref": f"m{message.id}", "type": "1", "answer": "id:1 stat:DELIVRD"},
    )
    assert (response.status_code, response.data) == (200, b"")
    row = status_of(db, message)
    assert row.status is MessageStatus.DELIVERED and row.delivered_at is not None
    # Kannel may repeat a report: still 200, nothing changes.
    repeat = {"secret": INBOUND_SECRET, "ref": f"m{message.id}", "type": "2"}
    again = client.get("/gateway/sms/dlr", query_string=repeat)
    assert again.status_code == 200 and status_of(db, message).status is MessageStatus.DELIVERED


def test_failure_report_by_post_marks_the_message_failed(
    client: FlaskClient, db: Any, app: Flask, now: datetime
) -> None:
    message = sent_message(db, app, now)
    response = client.post(
        "/gateway/sms/dlr",
        data={"secret": INBOUND_SECRET, "ref": f"m{message.id}", "type": "16", "answer": "NACK/0x0000000b/Invalid"},
    )
    assert response.status_code == 200
    row = status_of(db, message)
    assert row.status is MessageStatus.FAILED and "NACK/0x0000000b" in (row.last_error or "")


def test_intermediate_report_confirms_a_message_in_doubt(
    client: FlaskClient, db: Any, app: Flask, now: datetime
) -> None:
    message = sent_message(db, app, now)
    row = status_of(db, message)
    row.status = MessageStatus.UNCONFIRMED
    db.session.flush()
    query = {"secret": INBOUND_SECRET, "ref": row.gateway_ref, "type": "8"}
    response = client.get("/gateway/sms/dlr", query_string=query)
    assert response.status_code == 200 and status_of(db, message).status is MessageStatus.SENT


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({"ref": "m1", "type": "1"}, 403),
        ({"secret": "wrong", "ref": "m1", "type": "1"}, 403),
        ({"secret": INBOUND_SECRET, "type": "1"}, 400),
        ({"secret": INBOUND_SECRET, "ref": "m1", "type": "%d"}, 400),
        ({"secret": INBOUND_SECRET, "ref": "m999999999", "type": "1"}, 404),
    ],
)
def test_bad_delivery_reports_are_refused(client: FlaskClient, db: Any, query: dict[str, str], status: int) -> None:
    assert client.get("/gateway/sms/dlr", query_string=query).status_code == status


def test_unset_secret_refuses_every_callback(client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app.config, "SMS_INBOUND_SECRET", "")
    assert client.get("/gateway/sms/dlr", query_string={"secret": "", "ref": "m1", "type": "1"}).status_code == 403
    assert client.get("/gateway/sms/incoming", query_string={"secret": "", "from": "79161234567"}).status_code == 403


@pytest.fixture
def incoming(monkeypatch: pytest.MonkeyPatch) -> IncomingRecorder:
    return stand_in_for_sms_commands(monkeypatch)


def test_incoming_sms_reaches_the_command_handler_and_answers_empty(
    client: FlaskClient, incoming: IncomingRecorder
) -> None:
    query = {"secret": INBOUND_SECRET, "from": "+79161234567", "to": "7377", "text": "123456789 Привет", "id": "k-9"}
    response = client.get("/gateway/sms/incoming", query_string=query)
    assert (response.status_code, response.data) == (200, b"")
    [(sender, text, at, message_id)] = incoming.calls
    assert (sender, text, message_id) == ("+79161234567", "123456789 Привет", "k-9")
    assert at.tzinfo is not None
    form = client.post("/gateway/sms/incoming", data={**query, "id": ""})
    assert form.status_code == 200 and incoming.calls[1][3] is None


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({"from": "+79161234567", "text": "x"}, 403),
        ({"secret": "nope", "from": "+79161234567", "text": "x"}, 403),
        ({"secret": INBOUND_SECRET, "text": "x"}, 400),
        ({"secret": INBOUND_SECRET, "from": "+7 916 123", "text": "x"}, 400),
        ({"secret": INBOUND_SECRET, "from": "+79161234567"}, 400),
        ({"secret": INBOUND_SECRET, "from": "+79161234567", "text": "x" * 1601}, 400),
        ({"secret": INBOUND_SECRET, "from": "+79161234567", "text": "boom"}, 400),
    ],
)
def test_bad_incoming_sms_requests_are_refused(
    client: FlaskClient, incoming: IncomingRecorder, query: dict[str, str], status: int
) -> None:
    assert client.get("/gateway/sms/incoming", query_string=query).status_code == status
    assert incoming.calls == []
