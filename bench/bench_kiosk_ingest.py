"""Kiosk batch ingestion speed: POST /api/v1/kiosk/checkins with batches of 500 verified check-ins.

Run from the repository root:
  python -m bench.bench_kiosk_ingest --database-url sqlite:////tmp/bench.sqlite3 --mode client
  python -m bench.bench_kiosk_ingest --database-url "$(.ci/start-postgres.sh 25499)" --mode gunicorn --workers 2

Every item is a different visitor (half personal QR codes read by the scanner, half Bluetooth tokens),
so every item verifies a MAC against a decrypted key and inserts a visit: the heaviest case. `client`
runs Flask's in-process test client (no HTTP, one thread); `gunicorn` starts gunicorn on loopback and
posts from client threads on the same machine. The database is emptied first. Target: >= 20,000
check-ins/s on PostgreSQL.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, insert, select

from bench.cpu_split import KINDS, cpu_seconds, per_request

KEYS = {
    "SECRET_KEY": "bench-secret-key-not-for-production",
    "DATA_ENCRYPTION_KEYS": "b1:" + base64.urlsafe_b64encode(b"b" * 32).decode(),
    "LOOKUP_HASH_KEY": base64.urlsafe_b64encode(b"l" * 32).decode(),
}


def settings(database_url: str) -> dict[str, Any]:
    return {"APP_ENV": "production", "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING", **KEYS}


def prepare(database_url: str, items: int, kiosks: int, history_days: int = 2) -> tuple[list[str], list[bytes]]:
    """Empty database, one venue, `kiosks` enrolled kiosks, `items` visitors with keys; returns
    the kiosks' credentials and the request bodies (batches of 500)."""
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from app.models import Person, PersonalCodeKey
    from app.services import kiosk_sync
    from app.services import kiosks as kiosk_service
    from app.services.personal_codes import KEY_CONTEXT
    from app.services.personal_data import keyring
    from tests.conftest import reset_database
    from venue_kiosk import codes

    reset_database(database_url)
    app = create_app(settings(database_url))
    now = datetime.now(UTC)
    with app.app_context():
        upgrade()
        from tests import factories

        venue = factories.venue(name="Bench ministry", default_stay_minutes=240, capacity=None)
        credentials = []
        for _ in range(kiosks):
            code = kiosk_service.create_pairing_code(venue.entrances[0].id, now - timedelta(hours=1))
            credentials.append(kiosk_sync.enrol(code, now - timedelta(hours=1)).credential)
        ring = keyring()
        people = [
            {"phone_hash": secrets.token_bytes(32), "phone_enc": b"-", "created_at": now, "timezone": "Europe/Moscow"}
            for _ in range(items)
        ]
        person_ids = list(db.session.scalars(insert(Person).returning(Person.id, sort_by_parameter_order=True), people))
        raw_keys = [secrets.token_bytes(32) for _ in range(items)]
        purposes = ["qr" if n % 2 == 0 else "ble" for n in range(items)]
        key_rows = [
            {
                "person_id": pid,
                "purpose": purpose,
                "key_enc": ring.encrypt(base64.b64encode(raw).decode(), context=KEY_CONTEXT),
                "created_at": now,
            }
            for pid, purpose, raw in zip(person_ids, purposes, raw_keys, strict=True)
        ]
        key_ids = list(
            db.session.scalars(
                insert(PersonalCodeKey).returning(PersonalCodeKey.id, sort_by_parameter_order=True), key_rows
            )
        )
        # A week of earlier visits (closed) for the same people, then fresh statistics: the table the
        # batches meet is not empty, as in production, and the planner knows it.
        from app.models import Checkin, CheckinSource, CheckoutReason

        history = [
            {
                "person_id": pid,
                "venue_id": venue.id,
                "entrance_id": venue.entrances[0].id,
                "party_size": 1,
                "source": CheckinSource.POSTER,
                "checked_in_at": now - timedelta(days=day + 2),
                "planned_checkout_at": now - timedelta(days=day + 2) + timedelta(hours=1),
                "checked_out_at": now - timedelta(days=day + 2) + timedelta(hours=1),
                "checkout_reason": CheckoutReason.AUTO,
                "created_at": now,
            }
            for pid in person_ids
            for day in range(history_days)
        ]
        if history:
            db.session.execute(insert(Checkin), history)
        db.session.commit()
        with db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
        db.engine.dispose()
    bodies = []
    for start in range(0, items, 500):
        batch = []
        for n in range(start, min(items, start + 500)):
            at = now - timedelta(seconds=n % 600)
            if purposes[n] == "qr":
                token = codes.personal_code(raw_keys[n], key_ids[n], at)
            else:
                token = codes.parse_ble_payload(codes.ble_token_payload(raw_keys[n], key_ids[n], at)).text
            method = "kiosk_scanner" if purposes[n] == "qr" else "ble"
            batch.append(
                {"client_id": str(uuid.uuid4()), "method": method, "token": token, "observed_at": at.isoformat()}
            )
        bodies.append(json.dumps({"sent_at": now.isoformat(), "items": batch}).encode())
    return credentials, bodies


def count_accepted(database_url: str) -> int:
    from app import create_app
    from app.extensions import db
    from app.models import Checkin

    app = create_app(settings(database_url))
    with app.app_context():
        total = db.session.scalar(select(func.count()).select_from(Checkin))
        db.engine.dispose()
        return int(total or 0)


def run_client(database_url: str, credentials: list[str], bodies: list[bytes]) -> float:
    from app import create_app

    app = create_app(settings(database_url))
    client = app.test_client()
    started = time.perf_counter()
    for n, body in enumerate(bodies):
        headers = {"Authorization": f"Bearer {credentials[n % len(credentials)]}", "Content-Type": "application/json"}
        resp = client.post("/api/v1/kiosk/checkins", data=body, headers=headers)
        assert resp.status_code == 200, resp.get_data(as_text=True)
    return time.perf_counter() - started


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_gunicorn(
    database_url: str, credentials: list[str], bodies: list[bytes], items: int, workers: int, threads: int
) -> float:
    port = _free_port()
    env = {**os.environ, **{k: str(v) for k, v in settings(database_url).items()}}
    bindir = Path(sys.executable).parent
    server = subprocess.Popen(
        [str(bindir / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "app.wsgi:app"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(trust_env=False) as probe:
            for _ in range(200):
                try:
                    probe.get(f"http://127.0.0.1:{port}/healthz")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
        pending = list(enumerate(bodies))
        lock = threading.Lock()
        errors: list[str] = []

        def worker() -> None:
            # The standard library's client on one kept-alive connection per thread: the tablets post from
            # their own machines, so the load generator here should take as little of the server's CPU as
            # it can (httpx took about 5 us per item, http.client about 1).
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                while True:
                    with lock:
                        if not pending:
                            return
                        n, body = pending.pop()
                    headers = {
                        "Authorization": f"Bearer {credentials[n % len(credentials)]}",
                        "Content-Type": "application/json",
                    }
                    connection.request("POST", "/api/v1/kiosk/checkins", body=body, headers=headers)
                    resp = connection.getresponse()
                    answer = resp.read()
                    if resp.status != 200:
                        errors.append(f"{resp.status} {answer[:200]!r}")
            finally:
                connection.close()

        pool = [threading.Thread(target=worker) for _ in range(threads)]
        before, client_before, started = cpu_seconds(), time.process_time(), time.perf_counter()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - started
        client = (time.process_time() - client_before) / items * 1e6
        print(
            f"  CPU per check-in: {per_request(before, cpu_seconds(), items, KINDS)}, posting client {client:,.0f} us"
        )
        if errors:
            raise SystemExit(f"{len(errors)} batches failed, first: {errors[0]}")
        return elapsed
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="sqlite:////tmp/bench_kiosk_ingest.sqlite3")
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--kiosks", type=int, default=8)
    parser.add_argument("--history-days", type=int, default=2, help="earlier visits per visitor already stored")
    parser.add_argument("--mode", choices=("client", "gunicorn"), default="client")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4, help="client threads posting batches (gunicorn mode)")
    args = parser.parse_args()
    credentials, bodies = prepare(args.database_url, args.items, args.kiosks, args.history_days)
    if args.mode == "client":
        elapsed = run_client(args.database_url, credentials, bodies)
    else:
        elapsed = run_gunicorn(args.database_url, credentials, bodies, args.items, args.workers, args.threads)
    recorded = count_accepted(args.database_url) - args.items * args.history_days
    dialect = args.database_url.split(":", 1)[0]
    print(f"kiosk ingestion: {recorded} check-ins in {len(bodies)} batches of <=500 in {elapsed:.2f} s")
    print(f"  => {recorded / elapsed:,.0f} check-ins/s")
    conditions = f"mode={args.mode}" + (
        f" (gunicorn sync workers={args.workers}, {args.threads} client threads on the same machine)"
        if args.mode == "gunicorn"
        else " (Flask test client, one thread, no HTTP)"
    )
    print(
        f"  {conditions}; database={dialect}; kiosks={args.kiosks}; every item a new visitor, half QR half BLE;"
        f" {args.items * args.history_days} earlier visits stored and analysed first"
    )
    print(
        f"  Python {platform.python_version()}, {os.cpu_count()} CPUs, Flask {version('flask')}, "
        f"SQLAlchemy {version('sqlalchemy')}, {platform.platform()}"
    )
    if recorded != args.items:
        raise SystemExit(f"expected {args.items} check-ins, found {recorded}")


if __name__ == "__main__":
    main()
