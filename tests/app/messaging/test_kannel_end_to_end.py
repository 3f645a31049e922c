"""Through the real Kannel: outbox -> dispatcher -> Kannel -> SMSC -> delivery report -> our endpoint.

The app runs as a live server on a committed database, so Kannel's callbacks reach real HTTP
endpoints and see only what the dispatcher committed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, select, text

from app.extensions import db
from app.models import MessageKind, MessageStatus, OutboxMessage, utcnow
from app.services.channels import AttemptResult, Outgoing, build_sms_gateway
from app.services.dispatch import Channels, DispatchSettings, dispatch_once
from app.services.outbox import retry_failed
from tests.app.messaging.conftest import INBOUND_SECRET, ScriptedChannels, queue, stand_in_for_sms_commands
from tests.support.kannel import KannelProcess, KannelSettings, find_binary, make_kannel_fixture, running_kannel
from tests.support.kannel.smsc import TestSmsc
from tests.support.live import LiveServer, require

# No quiet hours here: these tests run at whatever hour the machine's clock says.
SETTINGS = DispatchSettings(
    batch_size=100, claim_seconds=120, quiet_start=datetime.min.time(), quiet_end=datetime.min.time()
)


@pytest.fixture(scope="module")
def mo_url(messaging_live: LiveServer) -> str:
    return f"{messaging_live.url}/gateway/sms/incoming"


kannel = make_kannel_fixture(scope="module", mo_url_fixture="mo_url", mo_secret=INBOUND_SECRET, max_pending_submits=100)


@pytest.fixture
def real_kannel(request: pytest.FixtureRequest) -> KannelProcess:
    require(find_binary("bearerbox") is not None, "Kannel is not installed: run `bash .ci/install-kannel.sh`")
    process: KannelProcess = request.getfixturevalue("kannel")
    if not process.is_running:  # a test that stopped it failed before restarting it
        process.start()
    return process


def kannel_config(app: Flask, process: KannelProcess) -> dict[str, Any]:
    return {
        **app.config,
        "SMS_CHANNEL": "kannel",
        "KANNEL_SENDSMS_URL": process.sendsms_url,
        "KANNEL_USERNAME": process.settings.username,
        "KANNEL_PASSWORD": process.settings.password,
    }


@pytest.fixture
def channels(live_app: Flask, real_kannel: KannelProcess) -> Iterator[Channels]:
    config = kannel_config(live_app, real_kannel)
    built = Channels(config, build_sms_gateway(config, concurrency=8))
    yield built
    built.close()


def committed(app: Flask, make: Callable[[], OutboxMessage]) -> int:
    with app.app_context():
        message = make()
        db.session.commit()
        return message.id


def dispatch(app: Flask, channels: Channels, now: datetime | None = None) -> Any:
    with app.app_context():
        return dispatch_once(now or utcnow(), SETTINGS, channels)


def statuses(app: Flask, ids: Sequence[int]) -> dict[int, MessageStatus]:
    with app.app_context():
        rows = db.session.execute(select(OutboxMessage.id, OutboxMessage.status).where(OutboxMessage.id.in_(ids)))
        result = {row.id: row.status for row in rows}
        db.session.rollback()
        return result


def wait_for_statuses(app: Flask, expected: dict[int, MessageStatus], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (seen := statuses(app, list(expected))) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"statuses {seen}, expected {expected}")
        time.sleep(0.05)


def arrived(process: KannelProcess, recipient: str) -> list[str]:
    return [m.text for m in process.smsc.messages if m.recipient == recipient]


def test_cyrillic_and_latin_sms_reach_the_smsc_intact_and_come_back_delivered(
    live_app: Flask, real_kannel: KannelProcess, channels: Channels
) -> None:
    now = utcnow()
    cyrillic = "Вы были в кафе «Ромашка» 19:10–20:30 рядом с заболевшим. Сдайте тест, ёлки!"
    latin = "You were at Cafe [X] 19:10-20:30 near a positive case; get tested. Fee 0€"
    ids = [
        committed(live_app, lambda: queue(now, key="e2e-ru", recipient="+79165550001", body=cyrillic)),
        committed(live_app, lambda: queue(now, key="e2e-en", recipient="+79165550002", body=latin)),
    ]
    summary = dispatch(live_app, channels, now)
    assert (summary.claimed, summary.sent) == (2, 2)
    real_kannel.smsc.wait_until(lambda: arrived(real_kannel, "79165550001") and arrived(real_kannel, "79165550002"))
    assert arrived(real_kannel, "79165550001") == [cyrillic]
    assert arrived(real_kannel, "79165550002") == [latin]
    # Kannel posts the SMSC's receipt to /gateway/sms/dlr on the live server with our reference.
    wait_for_statuses(live_app, dict.fromkeys(ids, MessageStatus.DELIVERED))


def test_incoming_sms_through_kannel_reaches_the_command_handler(
    live_app: Flask, real_kannel: KannelProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = stand_in_for_sms_commands(monkeypatch)
    submitted_before = len(real_kannel.smsc.parts)
    real_kannel.smsc.deliver_mo("+79165550003", "7377", "123456789 Привет")
    [(sender, text_, at, message_id)] = recorder.wait_for(1)
    assert (sender, text_) == ("+79165550003", "123456789 Привет")
    assert at.tzinfo is not None and message_id
    time.sleep(0.3)  # an automatic reply from Kannel would reach the SMSC within milliseconds
    assert len(real_kannel.smsc.parts) == submitted_before


def test_sms_check_in_round_trip_through_kannel(
    live_app: Flask, real_kannel: KannelProcess, channels: Channels
) -> None:
    """A visitor texts a venue code: Kannel -> our endpoint -> check-in and reply in the outbox ->
    dispatcher -> Kannel -> the visitor's phone, with the delivery report coming back."""
    from tests import factories

    with live_app.app_context():
        venue = factories.venue(name="Кафе «Ромашка»")
        code = venue.short_code
        db.session.commit()
    real_kannel.smsc.deliver_mo("+79165550009", "7377", code)
    deadline = time.monotonic() + 10
    reply_id = None
    while reply_id is None:
        assert time.monotonic() < deadline, "no reply was queued for the incoming SMS"
        with live_app.app_context():
            reply_id = db.session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedup_key.like("sms-reply:%")))
            db.session.rollback()
        time.sleep(0.05)
    assert dispatch(live_app, channels).sent == 1
    real_kannel.smsc.wait_until(lambda: bool(arrived(real_kannel, "79165550009")))
    [reply] = arrived(real_kannel, "79165550009")
    assert "Ромашка" in reply
    wait_for_statuses(live_app, {reply_id: MessageStatus.DELIVERED})


def test_messages_wait_while_kannel_is_down_and_go_out_once_when_it_returns(
    live_app: Flask, real_kannel: KannelProcess, channels: Channels
) -> None:
    now = utcnow()
    recipients = [f"+7916556{i:04d}" for i in range(5)]
    ids = [
        committed(live_app, lambda r=r, i=i: queue(now, key=f"down-{i}", recipient=r, body=f"Сообщение {i}"))
        for i, r in enumerate(recipients)
    ]
    real_kannel.stop()
    try:
        summary = dispatch(live_app, channels, now)
        assert (summary.claimed, summary.retried, summary.unconfirmed) == (5, 5, 0)
        assert set(statuses(live_app, ids).values()) == {MessageStatus.PENDING}
        # Still down at the next attempt: they wait again, none is lost.
        assert dispatch(live_app, channels, now + timedelta(minutes=2)).retried == 5
    finally:
        real_kannel.start()
    summary = dispatch(live_app, channels, now + timedelta(minutes=10))
    assert summary.sent == 5
    real_kannel.smsc.wait_until(lambda: all(arrived(real_kannel, r[1:]) for r in recipients))
    wait_for_statuses(live_app, dict.fromkeys(ids, MessageStatus.DELIVERED))
    assert [len(arrived(real_kannel, r[1:])) for r in recipients] == [1] * 5
    assert dispatch(live_app, channels, now + timedelta(hours=3)).claimed == 0


class DyingAfter(Channels):
    """Submits the first `submit_first` messages for real, then the process 'dies'."""

    def __init__(self, inner: Channels, submit_first: int) -> None:
        super().__init__(inner.config, inner.sms_gateway)
        self.submit_first = submit_first

    def submit(self, messages: Sequence[Outgoing], claimed_until: float | None = None) -> list[AttemptResult]:
        super().submit(messages[: self.submit_first])
        raise SystemExit("dispatcher killed before recording outcomes")


def test_dispatcher_killed_mid_batch_never_sends_a_message_twice(
    live_app: Flask, real_kannel: KannelProcess, channels: Channels
) -> None:
    now = utcnow()
    recipients = [f"+7916557{i:04d}" for i in range(6)]
    ids = [
        committed(live_app, lambda r=r, i=i: queue(now, key=f"kill-{i}", recipient=r, body=f"Notice {i}"))
        for i, r in enumerate(recipients)
    ]
    with pytest.raises(SystemExit):
        dispatch(live_app, DyingAfter(channels, submit_first=3), now)
    # The three that went out come back delivered through their delivery reports, even though the
    # dispatcher never recorded them.
    real_kannel.smsc.wait_until(lambda: all(arrived(real_kannel, r[1:]) for r in recipients[:3]))
    wait_for_statuses(
        live_app,
        {**dict.fromkeys(ids[:3], MessageStatus.DELIVERED), **dict.fromkeys(ids[3:], MessageStatus.SENDING)},
    )
    # After the claim expires the others are in doubt: not re-sent, whatever the next runs do.
    later = now + timedelta(seconds=SETTINGS.claim_seconds + 1)
    summary = dispatch(live_app, channels, later)
    assert (summary.recovered, summary.claimed) == (3, 0)
    assert dispatch(live_app, channels, later + timedelta(hours=1)).claimed == 0
    assert set(statuses(live_app, ids[3:]).values()) == {MessageStatus.UNCONFIRMED}
    time.sleep(0.3)
    assert [len(arrived(real_kannel, r[1:])) for r in recipients] == [1, 1, 1, 0, 0, 0]
    # The operator decides to re-queue the ones in doubt: they go out (this time, exactly once).
    with live_app.app_context():
        assert retry_failed(later, include_unconfirmed=True) == 3
        db.session.commit()
    assert dispatch(live_app, channels, later + timedelta(hours=1)).sent == 3
    real_kannel.smsc.wait_until(lambda: all(arrived(real_kannel, r[1:]) for r in recipients))
    wait_for_statuses(live_app, dict.fromkeys(ids, MessageStatus.DELIVERED))
    assert [len(arrived(real_kannel, r[1:])) for r in recipients] == [1] * 6


def test_a_rolled_back_message_is_never_sent(live_app: Flask, database_url: str) -> None:
    now = utcnow()
    channels = ScriptedChannels(live_app.config)
    with live_app.app_context():
        queue(now, key="rolled-back", kind=MessageKind.OTP)
        db.session.flush()  # written, not committed
        if database_url.startswith("postgresql"):
            # Another dispatcher at this very moment cannot see the uncommitted row.
            with live_app.app_context():
                assert dispatch_once(now, SETTINGS, channels).claimed == 0
        db.session.rollback()
    assert dispatch(live_app, channels, now).claimed == 0
    assert channels.sent == []


def test_claims_are_committed_before_anything_is_sent(live_app: Flask) -> None:
    now = utcnow()
    message_id = committed(live_app, lambda: queue(now, key="commit-first", kind=MessageKind.OTP))
    engine = create_engine(live_app.config["SQLALCHEMY_DATABASE_URI"])
    seen: list[tuple[str, bool]] = []

    def look_from_outside(messages: Sequence[Outgoing]) -> None:
        # A separate connection sees the claim, so it was committed before this (network) step.
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT status, claimed_until IS NOT NULL FROM outbox_messages WHERE id = :id"), {"id": message_id}
            ).one()
        seen.append((row[0], bool(row[1])))

    try:
        dispatch(live_app, ScriptedChannels(live_app.config, before_submit=look_from_outside), now)
    finally:
        engine.dispose()
    assert seen == [("sending", True)]
    assert statuses(live_app, [message_id]) == {message_id: MessageStatus.SENT}


def test_messages_kannel_accepted_survive_a_gateway_crash_in_its_store(live_app: Flask, tmp_path: Path) -> None:
    """The outbox hands a message over once Kannel accepts it; from then on Kannel's store keeps it. With the
    operator's SMSC away, bearerbox holds the accepted messages in its queue; killed there and restarted,
    it sends every one of them, once, and their delivery reports still come back."""
    require(find_binary("bearerbox") is not None, "Kannel is not installed: run `bash .ci/install-kannel.sh`")
    gateway = running_kannel(tmp_path, KannelSettings(max_pending_submits=100))
    process = next(gateway)
    replacement: TestSmsc | None = None
    try:
        config = kannel_config(live_app, process)
        chans = Channels(config, build_sms_gateway(config, concurrency=8))
        try:
            port = process.smsc.port
            process.smsc.close()  # the SMSC goes away; Kannel keeps accepting into its queue
            deadline = time.monotonic() + 10
            while "online" in (process.status_text() or "").split("SMSC connections:")[-1]:
                assert time.monotonic() < deadline, process.status_text()
                time.sleep(0.05)
            now = utcnow()
            recipients = [f"+7916557{i:04d}" for i in range(5)]
            ids = [
                committed(live_app, lambda r=r, i=i: queue(now, key=f"crash-{i}", recipient=r, body=f"Сообщение {i}"))
                for i, r in enumerate(recipients)
            ]
            assert dispatch(live_app, chans, now).sent == 5  # accepted by Kannel: the outbox's part is done
            assert not any(process.smsc.messages)
            process.crash()
            replacement = TestSmsc(port=port)
            replacement.start()
            process.smsc = replacement
            process.start()
            replacement.wait_until(lambda: all(arrived(process, r[1:]) for r in recipients), timeout=30)
            wait_for_statuses(live_app, dict.fromkeys(ids, MessageStatus.DELIVERED), timeout=30)
            time.sleep(0.5)  # anything sent twice would have arrived by now
            assert [len(arrived(process, r[1:])) for r in recipients] == [1] * 5
        finally:
            chans.close()
    finally:
        gateway.close()
        if replacement is not None:
            replacement.close()
