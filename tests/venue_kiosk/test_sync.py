"""Tests for the durable queue and sync: a day offline, two restarts, exactly-once delivery, clock skew."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from kiosk_fakes import FakeKioskServer, SimClock, free_port, kiosk_server, make_config, make_credential

from venue_kiosk import codes
from venue_kiosk.app import KioskProgram
from venue_kiosk.local_queue import LocalQueue
from venue_kiosk.sync import SyncClient, backoff_delay, item_payload, measure_skew

__all__ = ["kiosk_server"]

START = datetime(2025, 3, 2, 6, 0, tzinfo=UTC)
KIOSK_CLOCK_SLOW_S = 90.0  # the tablet's clock is a minute and a half behind the server's
KEY = bytes(range(32))


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(n, 1.0, 300.0, rng) for n in range(1, 40)]
    assert 1.0 <= delays[0] <= 2.0
    assert all(150.0 <= d <= 300.0 for d in delays[10:])
    assert len({round(d, 3) for d in delays[10:]}) > 20  # jittered, not lockstep


def test_skew_is_measured_against_the_round_trip_midpoint() -> None:
    sent = START
    assert measure_skew(sent, sent + timedelta(seconds=2), sent + timedelta(seconds=91)) == 90.0


def test_items_are_corrected_and_flagged_only_beyond_the_threshold(tmp_path: Path) -> None:
    with LocalQueue(tmp_path / "q.sqlite3") as queue:
        queue.enqueue("ble", "tok", START)
        (item,) = queue.pending(1)
    assert "clock_skew_s" not in item_payload(item, 3.0, 5.0)
    skewed = item_payload(item, -42.5, 5.0)
    assert skewed["clock_skew_s"] == -42.5
    assert datetime.fromisoformat(skewed["observed_at"]) == START - timedelta(seconds=42.5)


def test_queue_refuses_naive_times_and_unknown_methods(tmp_path: Path) -> None:
    with LocalQueue(tmp_path / "q.sqlite3") as queue:
        with pytest.raises(ValueError, match="timezone-aware"):
            queue.enqueue("ble", "tok", datetime(2025, 1, 1))
        with pytest.raises(ValueError, match="method"):
            queue.enqueue("sms", "tok", START)
        assert queue.count() == 0


def _bulk(program: KioskProgram, clock: SimClock, count: int, first_ref: int) -> None:
    """Check-ins arriving through the day, a hundred per burst, observed on the kiosk's clock."""
    for burst in range(0, count, 100):
        now = clock() - timedelta(seconds=KIOSK_CLOCK_SLOW_S)
        items = [("ble", f"token-{first_ref + burst + i}", now) for i in range(100)]
        program.queue.enqueue_many(items)
        clock.advance(60)


def test_a_day_offline_with_two_restarts_delivers_every_checkin_exactly_once(tmp_path: Path) -> None:
    clock = SimClock(START)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    delays: list[float] = []

    async def sim_sleep(seconds: float) -> None:
        delays.append(seconds)
        clock.advance(seconds)
        await asyncio.sleep(0)

    def kiosk_clock() -> datetime:
        return clock() - timedelta(seconds=KIOSK_CLOCK_SLOW_S)

    def program(http: httpx.AsyncClient) -> KioskProgram:
        return KioskProgram(
            make_config(tmp_path, url),
            make_credential(url),
            clock=kiosk_clock,
            http=http,
            sleep=sim_sleep,
            rng=random.Random(3),
        )

    async def offline_run(kiosk: KioskProgram, until: datetime) -> None:
        task = asyncio.create_task(kiosk.sync.run(0.05))
        while clock() < until:
            await asyncio.sleep(0)
        task.cancel()

    async def scenario() -> tuple[FakeKioskServer, list[str], int]:
        async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
            # Morning: the server is unreachable; 4,000 check-ins, some through the scanner path.
            first = program(http)
            for ref in range(100):
                assert first.submit_scan(codes.personal_code(KEY, ref, kiosk_clock())).is_ok
            _bulk(first, clock, 3900, 1000)
            await offline_run(first, START + timedelta(hours=12))
            assert not first.sync.status.is_online
            # The first restart is a crash: no close, the SQLite file is simply reopened.
            second = program(http)
            assert second.queue.count() == 4000
            _bulk(second, clock, 6000, 10_000)
            await offline_run(second, START + timedelta(hours=25))
            await second.close()
            # The server is back; its first answer to a batch is lost after it committed the batch.
            server = FakeKioskServer(port=port, clock=clock).start()
            server.drop_responses = 1
            try:
                third = program(http)
                task = asyncio.create_task(third.sync.run(0.05))
                for _ in range(2000):
                    if third.queue.count() == 0:
                        break
                    await asyncio.sleep(0.01)
                task.cancel()
                settled = third.queue.count("accepted") + third.queue.count("duplicate")
                await third.close()
            finally:
                server.stop()
            first.queue.close()
            with LocalQueue(tmp_path / "queue.sqlite3") as reopened:
                return server, [i.client_id for i in reopened.pending(10)], settled

    server, still_pending, settled = asyncio.run(scenario())
    assert still_pending == []
    assert settled == 10_000
    assert len(server.items) == 10_000  # every check-in exactly once on the server
    assert server.received > 10_000  # the batch whose answer was lost was sent again and deduplicated
    assert max(delays) <= 300.0 and len(delays) > 200  # a day of capped, jittered retries
    # The skew was measured from server_time and every item was corrected by it and flagged.
    assert all(item["clock_skew_s"] == pytest.approx(KIOSK_CLOCK_SLOW_S, abs=1) for item in server.items.values())
    tokens = {item["token"]: item for item in server.items.values()}
    corrected = datetime.fromisoformat(tokens["token-1000"]["observed_at"])
    assert corrected == START + timedelta(hours=0)  # the first burst, put back on the server's clock
    assert sum(1 for item in server.items.values() if item["method"] == "kiosk_scanner") == 100


def test_revoked_credential_stops_syncing_and_shows_on_screen(tmp_path: Path, kiosk_server: FakeKioskServer) -> None:
    kiosk_server.is_revoked = True

    async def scenario() -> tuple[bool, int]:
        async with httpx.AsyncClient(trust_env=False) as http:
            kiosk = KioskProgram(
                make_config(tmp_path, kiosk_server.url),
                make_credential(kiosk_server.url),
                clock=lambda: datetime.now(UTC),
                http=http,
            )
            kiosk.queue.enqueue("ble", "tok", datetime.now(UTC))
            await asyncio.wait_for(kiosk.sync.run(0.05), 5)  # returns instead of retrying forever
            revoked, pending = kiosk.sync.status.is_revoked, kiosk.queue.count()
            await kiosk.close()
            return revoked, pending

    assert asyncio.run(scenario()) == (True, 1)  # kept locally, not sent


def test_heartbeat_reports_queue_length_and_health(tmp_path: Path, kiosk_server: FakeKioskServer) -> None:
    async def scenario() -> None:
        async with httpx.AsyncClient(trust_env=False) as http:
            with LocalQueue(tmp_path / "q.sqlite3") as queue:
                queue.enqueue("ble", "tok", START)
                client = SyncClient(queue, make_credential(kiosk_server.url), http, lambda: datetime.now(UTC))
                client.health.is_scanner_ok = True
                await client.heartbeat()

    asyncio.run(scenario())
    (beat,) = kiosk_server.heartbeats
    assert beat["queue_length"] == 1 and beat["scanner_ok"] is True and beat["ble_ok"] is False
    assert datetime.fromisoformat(beat["sent_at"]).tzinfo is not None
