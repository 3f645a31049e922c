"""The dispatcher: claim, submit, record; retries, quiet hours, the stop switch and crash recovery."""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app.jobs import all_jobs
from app.models import MessageChannel, MessageKind, MessageStatus, OutboxMessage, SystemSwitch
from app.services.channels import Attempt, AttemptResult, Outgoing, send_sms
from app.services.dispatch import (
    BACKOFF_CAP,
    CLAIM_MARGIN_SECONDS,
    Channels,
    DispatchSettings,
    backoff_delay,
    dispatch_once,
    run_dispatcher,
)
from app.services.outbox import record_delivery_report
from app.services.sms_gateways import DeliveryReport, DeliveryStatus, KannelGateway, sms_segments
from app.services.sms_transport import Exchange, HttpAnswer, HttpFailure, HttpRequest
from tests.app.messaging.conftest import ScriptedChannels, queue
from tests.support.sms_transport import ScriptedTransport

SETTINGS = DispatchSettings(batch_size=100, max_attempts=3, claim_seconds=120)


def reload(db: Any, message: OutboxMessage) -> OutboxMessage:
    db.session.expire_all()
    found = db.session.get(OutboxMessage, message.id)
    assert found is not None
    return found


def test_dispatcher_job_is_registered() -> None:
    assert all_jobs()["dispatch_outbox"].trigger_args == {"seconds": 5}


def test_due_messages_are_sent_in_priority_order_with_our_reference(
    db: Any, now: datetime, scripted: ScriptedChannels
) -> None:
    notice = queue(now, key="n1", kind=MessageKind.NOTICE)
    code = queue(now, key="c1", kind=MessageKind.OTP, body="Код 123456")
    later = queue(now + timedelta(minutes=5), key="later")
    summary = dispatch_once(now, SETTINGS, scripted)
    assert [m.id for m in scripted.sent] == [code.id, notice.id]
    assert scripted.sent[0].recipient == "+79161234567" and scripted.sent[0].reference == f"m{code.id}"
    assert (summary.claimed, summary.sent) == (2, 2)
    for message in (notice, code):
        row = reload(db, message)
        assert (row.status, row.attempts, row.sent_at, row.gateway_ref) == (
            MessageStatus.SENT,
            1,
            now,
            f"m{message.id}",
        )
    assert reload(db, later).status is MessageStatus.PENDING


def test_batch_size_limits_one_claim_and_the_job_drains_the_queue(
    app: Flask, db: Any, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(7):
        queue(now, key=f"b{i}", channel=MessageChannel.LOG)
    channels = ScriptedChannels(app.config)
    assert dispatch_once(now, DispatchSettings(batch_size=3), channels).claimed == 3
    monkeypatch.setitem(app.config, "DISPATCH_BATCH_SIZE", 3)
    result = run_dispatcher(app, clock=lambda: now, channels=channels)
    assert result["sent"] == 4 and len(channels.sent) == 7
    assert len({m.id for m in channels.sent}) == 7


def test_refused_submit_is_retried_with_growing_jittered_backoff(
    db: Any, now: datetime, scripted: ScriptedChannels
) -> None:
    scripted.answer = lambda m: AttemptResult(Attempt.RETRY, "ConnectError: refused")
    message = queue(now, key="r1")
    dispatch_once(now, SETTINGS, scripted, rng=random.Random(1))
    row = reload(db, message)
    assert (row.status, row.attempts, row.claimed_until) == (MessageStatus.PENDING, 1, None)
    first_wait = row.next_attempt_at - now
    assert timedelta(seconds=15) <= first_wait <= timedelta(seconds=30)
    assert "ConnectError" in (row.last_error or "")
    # Not due yet: nothing is attempted before the backoff has passed.
    dispatch_once(now + first_wait - timedelta(seconds=1), SETTINGS, scripted)
    assert len(scripted.sent) == 1
    second = now + first_wait
    dispatch_once(second, SETTINGS, scripted, rng=random.Random(2))
    row = reload(db, message)
    assert row.attempts == 2 and timedelta(seconds=30) <= row.next_attempt_at - second <= timedelta(seconds=60)


def test_backoff_is_capped_and_never_below_half_a_step() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(20, rng) for _ in range(200)]
    assert all(BACKOFF_CAP / 2 <= d <= BACKOFF_CAP for d in delays)
    assert len(set(delays)) > 100  # jittered, not one value


def test_out_of_attempts_is_failed(db: Any, now: datetime, scripted: ScriptedChannels) -> None:
    scripted.answer = lambda m: AttemptResult(Attempt.RETRY, "503 Temporal failure")
    message = queue(now, key="x1")
    at = now
    for _ in range(SETTINGS.max_attempts):
        dispatch_once(at, SETTINGS, scripted)
        at += timedelta(hours=2)
    row = reload(db, message)
    assert (row.status, row.attempts) == (MessageStatus.FAILED, 3)
    assert row.last_error.startswith("gave up after 3 attempts")  # type: ignore[union-attr]
    dispatch_once(at, SETTINGS, scripted)
    assert len(scripted.sent) == 3


def test_permanent_error_fails_at_once(db: Any, now: datetime, scripted: ScriptedChannels) -> None:
    scripted.answer = lambda m: AttemptResult(Attempt.PERMANENT, "invalid recipient")
    message = queue(now, key="p1")
    assert dispatch_once(now, SETTINGS, scripted).failed == 1
    row = reload(db, message)
    assert (row.status, row.attempts, row.last_error) == (MessageStatus.FAILED, 1, "invalid recipient")


def test_in_doubt_answer_is_unconfirmed_and_never_resent_automatically(
    db: Any, now: datetime, scripted: ScriptedChannels
) -> None:
    scripted.answer = lambda m: AttemptResult(Attempt.IN_DOUBT, "ReadTimeout: timed out")
    message = queue(now, key="d1")
    dispatch_once(now, SETTINGS, scripted)
    assert reload(db, message).status is MessageStatus.UNCONFIRMED
    dispatch_once(now + timedelta(days=1), SETTINGS, scripted)
    assert len(scripted.sent) == 1
    # The gateway had it after all: its delivery report settles the message.
    assert record_delivery_report(DeliveryReport(f"m{message.id}", DeliveryStatus.DELIVERED, 1, ""), now)
    row = reload(db, message)
    assert (row.status, row.delivered_at) == (MessageStatus.DELIVERED, now)


def _kannel_answering(handler: Any) -> Channels:
    gateway = KannelGateway(
        "http://kannel.test/cgi-bin/sendsms",
        "u",
        "p",
        "7377",
        "http://app.test/gateway/sms/dlr?ref={reference}&type=%d",
        transport=ScriptedTransport(handler),
    )
    return Channels({}, gateway)


def test_gateway_read_timeout_is_in_doubt_but_a_refused_connection_is_retried(db: Any, now: datetime) -> None:
    timed_out = queue(now, key="t1", recipient="+79160000001")
    refused = queue(now, key="t2", recipient="+79160000002")

    def handler(request: HttpRequest) -> Exchange:
        if request.headers["X-Kannel-To"] == "+79160000001":
            return HttpFailure("SocketTimeoutError: the request went out, no answer came back", in_doubt=True)
        return HttpFailure("ClientConnectorError: connection refused", in_doubt=False)

    summary = dispatch_once(now, SETTINGS, _kannel_answering(handler))
    assert (summary.unconfirmed, summary.retried) == (1, 1)
    assert reload(db, timed_out).status is MessageStatus.UNCONFIRMED
    assert reload(db, refused).status is MessageStatus.PENDING


def test_invalid_number_from_the_gateway_fails_at_once(db: Any, now: datetime) -> None:
    message = queue(now, key="bad", recipient="+7916")
    channels = _kannel_answering(lambda r: HttpAnswer(400, "Number(s) has/have been denied"))
    dispatch_once(now, SETTINGS, channels)
    assert reload(db, message).status is MessageStatus.FAILED


def test_long_sms_is_shortened_to_three_parts() -> None:
    seen: list[str] = []

    def handler(request: HttpRequest) -> Exchange:
        seen.append((request.body or b"").decode())
        return HttpAnswer(202, "0: Accepted for delivery")

    long_text = "Вы были в кафе «Ромашка» рядом с человеком с положительным тестом. " * 10
    channels = _kannel_answering(handler)
    [result] = send_sms(channels.sms_gateway, [Outgoing(1, MessageChannel.SMS, "+79161234567", "", long_text, "m1")])
    assert result.attempt is Attempt.ACCEPTED
    assert sms_segments(seen[0])[1] == 3 and seen[0].endswith("…") and long_text.startswith(seen[0][:-1])


def test_delivery_report_that_beats_the_record_step_wins(db: Any, now: datetime, scripted: ScriptedChannels) -> None:
    message = queue(now, key="fast")

    def report_at_once(messages: Any) -> None:
        # Kannel's callback can arrive while the dispatcher is still submitting the batch.
        assert record_delivery_report(DeliveryReport(messages[0].reference, DeliveryStatus.DELIVERED, 1, ""), now)

    scripted.before_submit = report_at_once
    dispatch_once(now, SETTINGS, scripted)
    row = reload(db, message)
    assert (row.status, row.sent_at, row.delivered_at) == (MessageStatus.DELIVERED, now, now)


def test_notices_are_held_while_sending_is_halted(db: Any, now: datetime, scripted: ScriptedChannels) -> None:
    db.session.add(SystemSwitch(name="notices_halted", is_on=True, changed_at=now))
    notice = queue(now, key="h-n", kind=MessageKind.NOTICE)
    retraction = queue(now, key="h-r", kind=MessageKind.RETRACTION)
    code = queue(now, key="h-c", kind=MessageKind.OTP)
    dispatch_once(now, SETTINGS, scripted)
    assert [m.id for m in scripted.sent] == [code.id]
    for held in (notice, retraction):
        row = reload(db, held)
        assert (row.status, row.attempts) == (MessageStatus.PENDING, 0)
    switch = db.session.get(SystemSwitch, "notices_halted")
    switch.is_on = False
    dispatch_once(now, SETTINGS, scripted)
    assert {m.id for m in scripted.sent[1:]} == {notice.id, retraction.id}


def test_sms_wait_for_morning_in_the_recipients_zone_but_codes_and_email_do_not(
    db: Any, now: datetime, scripted: ScriptedChannels
) -> None:
    night = now.replace(hour=20)  # 23:00 in Moscow, 06:00 tomorrow in Vladivostok, 15:00 in New York
    moscow = queue(night, key="q-msk")
    vladivostok = queue(night, key="q-vvo", timezone="Asia/Vladivostok")
    new_york = queue(night, key="q-ny", timezone="America/New_York")
    code = queue(night, key="q-otp", kind=MessageKind.OTP)
    email = queue(night, key="q-mail", channel=MessageChannel.EMAIL, recipient="a@example.org")
    summary = dispatch_once(night, SETTINGS, scripted)
    assert {m.id for m in scripted.sent} == {new_york.id, code.id, email.id}
    assert summary.deferred == 2
    morning_msk = night.replace(hour=6) + timedelta(days=1)  # 09:00 MSK
    row = reload(db, moscow)
    assert (row.status, row.attempts) == (MessageStatus.PENDING, 0)
    assert morning_msk <= row.next_attempt_at < morning_msk + timedelta(minutes=60)
    morning_vvo = night.replace(hour=23)  # 09:00 in Vladivostok
    assert morning_vvo <= reload(db, vladivostok).next_attempt_at < morning_vvo + timedelta(minutes=60)
    # In the morning they go out.
    dispatch_once(morning_msk + timedelta(hours=1), SETTINGS, scripted)
    assert {m.id for m in scripted.sent[3:]} == {moscow.id, vladivostok.id}


def test_an_answer_to_a_text_just_sent_goes_out_at_night_but_a_late_one_waits_for_morning(
    db: Any, now: datetime, scripted: ScriptedChannels
) -> None:
    night = now.replace(hour=20)  # 23:00 in Moscow
    answer = queue(night, key="q-reply", kind=MessageKind.CONFIRMATION, body="Вы отмечены")
    # Queued 16 minutes earlier (21:44 in Moscow) and held back since, by an outage say.
    late = queue(night - timedelta(minutes=16), key="q-late", kind=MessageKind.CONFIRMATION, body="Вы отмечены")
    notice = queue(night, key="q-notice")
    summary = dispatch_once(night, SETTINGS, scripted)
    assert [m.id for m in scripted.sent] == [answer.id]
    assert summary.deferred == 2
    morning_msk = night.replace(hour=6) + timedelta(days=1)  # 09:00 MSK
    assert morning_msk <= reload(db, late).next_attempt_at < morning_msk + timedelta(minutes=60)
    assert reload(db, notice).status is MessageStatus.PENDING


def test_dispatcher_dying_after_its_claim_leaves_messages_in_doubt_not_resent(
    db: Any, now: datetime, scripted: ScriptedChannels
) -> None:
    first = queue(now, key="k1")
    second = queue(now, key="k2")

    def die(messages: Any) -> None:
        raise RuntimeError("killed between claim and record")

    scripted.before_submit = die
    with pytest.raises(RuntimeError):
        dispatch_once(now, SETTINGS, scripted)
    assert {reload(db, m).status for m in (first, second)} == {MessageStatus.SENDING}
    scripted.before_submit = None
    # While the claim holds, nobody else takes them.
    assert dispatch_once(now + timedelta(seconds=60), SETTINGS, scripted).claimed == 0
    # After it expires they are in doubt: the earlier run may have submitted them.
    summary = dispatch_once(now + timedelta(seconds=121), SETTINGS, scripted)
    assert (summary.recovered, summary.claimed, scripted.sent) == (2, 0, [])
    row = reload(db, first)
    assert row.status is MessageStatus.UNCONFIRMED and row.last_error.startswith("in doubt")  # type: ignore[union-attr]
    # A late delivery report for one proves it went out.
    record_delivery_report(DeliveryReport(f"m{first.id}", DeliveryStatus.DELIVERED, 1, "stat:DELIVRD"), now)
    assert reload(db, first).status is MessageStatus.DELIVERED
    assert reload(db, second).status is MessageStatus.UNCONFIRMED


def test_log_channel_writes_the_text_with_a_masked_recipient(
    app: Flask, db: Any, now: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    message = queue(now, key="log1", body="Ваш код 481516", recipient="+79169876543")
    with caplog.at_level(logging.INFO, logger="app.services.channels"):
        dispatch_once(now, SETTINGS, Channels(app.config, None))
    assert reload(db, message).status is MessageStatus.SENT
    assert "Ваш код 481516" in caplog.text and "+7916***6543" in caplog.text
    assert "+79169876543" not in caplog.text


def test_each_message_is_claimed_once(db: Any, now: datetime, scripted: ScriptedChannels) -> None:
    for i in range(30):
        queue(now, key=f"once{i}")
    for _ in range(3):
        dispatch_once(now, DispatchSettings(batch_size=12), scripted)
    ids = [m.id for m in scripted.sent]
    assert len(ids) == 30 == len(set(ids))
    assert db.session.scalar(select(OutboxMessage.id).where(OutboxMessage.status != MessageStatus.SENT)) is None


def test_one_batch_records_many_outcomes_of_each_kind(db: Any, now: datetime, scripted: ScriptedChannels) -> None:
    answers = {"+7916000001": Attempt.RETRY, "+7916000002": Attempt.PERMANENT, "+7916000003": Attempt.IN_DOUBT}
    messages = [queue(now, key=f"many{i}", recipient=f"+791600000{1 + i % 4}") for i in range(12)]
    scripted.answer = lambda m: AttemptResult(answers.get(m.recipient, Attempt.ACCEPTED), "answer")
    summary = dispatch_once(now, SETTINGS, scripted)
    assert (summary.retried, summary.failed, summary.unconfirmed, summary.sent) == (3, 3, 3, 3)
    expected = [MessageStatus.PENDING, MessageStatus.FAILED, MessageStatus.UNCONFIRMED, MessageStatus.SENT] * 3
    assert [reload(db, m).status for m in messages] == expected


def test_numbers_echoed_in_gateway_errors_are_stored_masked(db: Any, now: datetime, scripted: ScriptedChannels) -> None:
    scripted.answer = lambda m: AttemptResult(Attempt.RETRY, f"503 queue full for {m.recipient} (79161234567)")
    message = queue(now, key="echo", recipient="+79161234567")
    dispatch_once(now, SETTINGS, scripted)
    error = reload(db, message).last_error or ""
    assert "79161234567" not in error and error.count("***") == 2 and error.startswith("503 queue full")


def test_an_unreadable_recipient_fails_that_message_without_blocking_the_queue(
    db: Any, now: datetime, scripted: ScriptedChannels
) -> None:
    broken = queue(now, key="broken", kind=MessageKind.OTP)
    fine = queue(now, key="fine")
    broken.recipient_enc = b"\x01\x02zz" + bytes(40)  # a key id nobody holds
    db.session.flush()
    summary = dispatch_once(now, SETTINGS, scripted)
    assert [m.id for m in scripted.sent] == [fine.id] and summary.sent == 1
    row = reload(db, broken)
    assert row.status is MessageStatus.FAILED and "cannot be decrypted" in (row.last_error or "")


def test_sms_are_started_only_while_the_claim_leaves_time_to_record(db: Any, now: datetime) -> None:
    queue(now, key="in-time", recipient="+79160000003")
    channels = _kannel_answering(lambda r: HttpAnswer(202, "0: Accepted for delivery"))
    dispatch_once(now, SETTINGS, channels)
    transport = channels.sms_gateway.transport  # type: ignore[union-attr]
    assert isinstance(transport, ScriptedTransport) and transport.start_within is not None
    assert 0 < transport.start_within <= SETTINGS.claim_seconds - CLAIM_MARGIN_SECONDS
    assert transport.start_within > SETTINGS.claim_seconds - CLAIM_MARGIN_SECONDS - 5


@pytest.mark.parametrize(
    ("echoed", "stored"),
    [
        ("rejected: to=+79161234567", "rejected: to=+7916***4567"),
        ("GET /cgi-bin/sendsms?to=%2B79161234567&text=x failed", "GET /cgi-bin/sendsms?to=+7916***4567&text=x failed"),
        ("bad number +7 916 123-45-67", "bad number +7916***4567"),
        ("dest 8 (916) 123 45 67 barred", "dest 89161****67 barred"),
        ("error 0x45, code 400, retry in 30 s", "error 0x45, code 400, retry in 30 s"),
        ("NACK/0x0000000b/Invalid destination", "NACK/0x0000000b/Invalid destination"),
    ],
)
def test_numbers_a_gateway_echoes_in_an_error_are_masked_however_written(echoed: str, stored: str) -> None:
    from app.services.channels import scrub_personal

    assert scrub_personal(echoed) == stored
