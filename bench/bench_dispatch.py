"""Measure SMS per second through the whole outbox: enqueue, claim, submit to a real Kannel, record.

    .venv/bin/python bench/bench_dispatch.py                       # SQLite in a temporary directory
    .venv/bin/python bench/bench_dispatch.py --database-url "$(.ci/start-postgres.sh 25440)"

The test SMSC and the sink for Kannel's delivery reports run in a second process, as the operator's
network would; Kannel, the SMSC and this process share the machine's CPUs.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_kannel_submit import _sent_by_kannel, network_side
from tests.support.kannel import KannelProcess, KannelSettings, TestSmsc, find_binary


def _make_app(database_url: str, kannel: KannelProcess, sink_port: int, overrides: dict[str, Any]) -> Any:
    from flask_migrate import upgrade

    from app import create_app
    from tests.conftest import reset_database

    reset_database(database_url)
    app = create_app(
        {
            "APP_ENV": "testing",
            "DATABASE_URL": database_url,
            "SECRET_KEY": "bench",
            "DATA_ENCRYPTION_KEYS": "b1:" + base64.urlsafe_b64encode(b"b" * 32).decode(),
            "LOOKUP_HASH_KEY": base64.urlsafe_b64encode(b"l" * 32).decode(),
            "LOG_LEVEL": "WARNING",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{sink_port}",
            "SMS_INBOUND_SECRET": "bench-secret",
            "SMS_CHANNEL": "kannel",
            "KANNEL_SENDSMS_URL": kannel.sendsms_url,
            "KANNEL_USERNAME": kannel.settings.username,
            "KANNEL_PASSWORD": kannel.settings.password,
            # The bench runs at any hour: quiet hours off, so every message is due at once.
            "QUIET_HOURS_START": "00:00",
            "QUIET_HOURS_END": "00:00",
            **overrides,
        }
    )
    with app.app_context():
        upgrade()
    return app


def run(app: Any, kannel: KannelProcess, count: int, cyrillic: bool, label: str) -> None:
    from sqlalchemy import delete, func, select

    from app.extensions import db
    from app.models import MessageChannel, MessageKind, MessageStatus, OutboxMessage, utcnow
    from app.services.dispatch import run_dispatcher
    from app.services.outbox import enqueue

    text = "Вы были рядом с заболевшим, сдайте тест" if cyrillic else "You were near a positive case, get tested"
    with app.app_context():
        db.session.execute(delete(OutboxMessage))
        db.session.commit()
        started = time.perf_counter()
        now = utcnow()
        for i in range(count):
            enqueue(
                dedup_key=f"{label}-{i}",
                channel=MessageChannel.SMS,
                kind=MessageKind.NOTICE,
                recipient=f"+7916{i:07d}",
                body=f"{text} #{i}",
                now=now,
            )
        db.session.commit()
        enqueued = time.perf_counter() - started
    sent_before = _sent_by_kannel(kannel)
    started = time.perf_counter()
    runs = 0
    while True:
        with app.app_context():
            result = run_dispatcher(app, time_budget=600)
            db.session.remove()
        runs += 1
        if result["claimed"] == 0:
            break
    dispatched = time.perf_counter() - started
    with app.app_context():
        counts = dict(
            db.session.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).tuples().all()
        )
        db.session.rollback()
    sent = counts.get(MessageStatus.SENT, 0) + counts.get(MessageStatus.DELIVERED, 0)
    deadline = time.monotonic() + 120
    while _sent_by_kannel(kannel) - sent_before < sent and time.monotonic() < deadline:
        time.sleep(0.02)
    at_smsc = time.perf_counter() - started
    print(
        f"{label}: n={count} enqueue/s={count / enqueued:6.0f} "
        f"dispatched(claim+submit+record)/s={sent / dispatched:6.0f} at-SMSC/s={sent / at_smsc:6.0f} "
        f"statuses={ {str(k): v for k, v in counts.items()} } job-runs={runs}",
        flush=True,
    )


def measure_dlr_endpoint(app: Any) -> None:
    """Delivery reports through the whole Flask stack (in process, no HTTP server): one per sent message."""
    from sqlalchemy import select

    from app.extensions import db
    from app.models import OutboxMessage

    with app.app_context():
        refs = list(db.session.scalars(select(OutboxMessage.gateway_ref).where(OutboxMessage.gateway_ref.is_not(None))))
        db.session.rollback()
    client = app.test_client()
    started = time.perf_counter()
    statuses: dict[int, int] = {}
    for ref in refs:
        code = client.get(
            "/gateway/sms/dlr",
            query_string={"secret": "bench-secret", "ref": ref, "type": "1", "answer": "stat:DELIVRD"},
        ).status_code
        statuses[code] = statuses.get(code, 0) + 1
    elapsed = time.perf_counter() - started
    print(
        f"DLR endpoint (Flask test client, one thread): n={len(refs)} reports/s={len(refs) / elapsed:6.0f} {statuses}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--database-url", default="", help="default: a SQLite file in a temporary directory")
    parser.add_argument("--batch-size", type=int, default=500, help="DISPATCH_BATCH_SIZE (default as in production)")
    parser.add_argument("--concurrency", type=int, default=16, help="DISPATCH_CONCURRENCY (default as in production)")
    parser.add_argument("--max-pending-submits", type=int, default=100)
    parser.add_argument("--cyrillic", action="store_true", help="UCS-2 texts instead of GSM-7")
    args = parser.parse_args()
    if find_binary("bearerbox") is None:
        sys.exit("Kannel is not installed: run `bash .ci/install-kannel.sh`")

    with network_side() as (_dlrs, smsc_port, sink_port):
        settings = KannelSettings(log_level=2, max_pending_submits=args.max_pending_submits)
        with tempfile.TemporaryDirectory() as workdir:
            database_url = args.database_url or f"sqlite:///{workdir}/bench.sqlite3"
            kannel = KannelProcess(Path(workdir), TestSmsc(port=smsc_port), settings)
            try:
                kannel.start()
                app = _make_app(
                    database_url,
                    kannel,
                    sink_port,
                    {"DISPATCH_BATCH_SIZE": args.batch_size, "DISPATCH_CONCURRENCY": args.concurrency},
                )
                print(
                    f"conditions: database={database_url.split(':', 1)[0]} batch={args.batch_size} "
                    f"concurrency={args.concurrency} Kannel 1.4.5 max-pending-submits={args.max_pending_submits} "
                    f"log-level=warning, dlr-mask 19 to an asyncio sink, text={'UCS-2' if args.cyrillic else 'GSM-7'}, "
                    f"one dispatcher process, {os.cpu_count()} CPUs shared by Kannel, the SMSC, the database "
                    f"and the dispatcher, load average {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
                run(app, kannel, 200, args.cyrillic, "warm-up")
                run(app, kannel, args.count, args.cyrillic, "measured")
                measure_dlr_endpoint(app)
            finally:
                kannel.close()


if __name__ == "__main__":
    main()
