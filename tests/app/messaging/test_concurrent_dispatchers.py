"""Several dispatchers on one committed database share the queue without sending anything twice."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.extensions import db
from app.models import MessageChannel, MessageKind, MessageStatus, OutboxMessage, utcnow
from app.services.channels import build_sms_gateway
from app.services.dispatch import run_dispatcher
from app.services.sms_gateways import GenericHttpGateway, KannelGateway
from tests.app.messaging.conftest import ScriptedChannels, queue


def test_parallel_dispatchers_claim_disjoint_batches(
    live_app: Flask, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = utcnow()
    with live_app.app_context():
        for i in range(240):
            queue(now, key=f"par-{i}", channel=MessageChannel.LOG, kind=MessageKind.OTP)
        db.session.commit()
    monkeypatch.setitem(live_app.config, "DISPATCH_BATCH_SIZE", 20)
    channels = [ScriptedChannels(live_app.config) for _ in range(3)]
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def work(mine: ScriptedChannels) -> None:
        try:
            start.wait(5)
            with live_app.app_context():
                while run_dispatcher(live_app, channels=mine)["claimed"]:
                    pass
                db.session.remove()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in channels]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    sent = Counter(m.id for c in channels for m in c.sent)
    assert len(sent) == 240 and set(sent.values()) == {1}
    with live_app.app_context():
        counts = dict(
            db.session.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all()
        )
    assert counts == {MessageStatus.SENT: 240}


def test_sms_channel_setting_picks_the_gateway(app: Flask) -> None:
    base: dict[str, Any] = {
        **app.config,
        "PUBLIC_BASE_URL": "https://checkin.example/",
        "SMS_INBOUND_SECRET": "s3cret-~.x",
    }
    kannel = build_sms_gateway(
        {**base, "SMS_CHANNEL": "kannel", "KANNEL_SENDSMS_URL": "http://k/cgi-bin/sendsms", "KANNEL_USERNAME": "u"},
        concurrency=4,
    )
    assert isinstance(kannel, KannelGateway) and kannel.concurrency == 4 and kannel.max_segments == 3
    params = kannel.sendsms_params("+79161234567", "hi", "m42")
    assert params["dlr-url"] == "https://checkin.example/gateway/sms/dlr?secret=s3cret-~.x&ref=m42&type=%d&answer=%A"
    assert params["from"] == app.config["SMS_SHORT_NUMBER"]
    kannel.close()
    http = build_sms_gateway({**base, "SMS_CHANNEL": "http", "SMS_HTTP_URL": "http://g/api", "SMS_HTTP_TOKEN": "t"}, 2)
    assert isinstance(http, GenericHttpGateway) and http.headers == {"Authorization": "Bearer t"}
    http.close()
    assert build_sms_gateway({**base, "SMS_CHANNEL": "log"}, 2) is None
    # Kannel would rewrite a %-escaped secret in dlr-url; an empty one would refuse every report.
    for secret in ("", "s%dsecret", "short"):
        with pytest.raises(ValueError, match="SMS_INBOUND_SECRET"):
            build_sms_gateway({**base, "SMS_CHANNEL": "kannel", "SMS_INBOUND_SECRET": secret}, 2)
