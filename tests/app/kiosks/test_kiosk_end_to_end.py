"""The real kiosk program against a live server of the real app: enrol, queue offline, deliver once; its screen."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import sqlite3
import threading
import time
from base64 import b64decode
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from app.extensions import db
from app.models import Checkin, CheckinSource
from app.services import kiosks, personal_codes, sign_in
from tests import factories
from tests.support.live import LiveServer, live_server_fixture
from venue_kiosk import codes
from venue_kiosk.app import KioskProgram
from venue_kiosk.ble import BleCheckin
from venue_kiosk.config import KioskConfig
from venue_kiosk.sync import ServerUnreachableError, enrol

live = live_server_fixture()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(coro: Any) -> Any:
    """asyncio.run on a thread of its own: Playwright's sync API (the session's browser) marks its own
    event loop as running in the main thread, and asyncio.run refuses to start beside it."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(coro)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _config(state_dir: Path, server_url: str) -> KioskConfig:
    return KioskConfig(
        server_url=server_url, state_dir=state_dir, screen_port=0, ble_enabled=False, sync_interval_s=0.05
    )


@dataclasses.dataclass
class Visitor:
    person_id: int
    qr: tuple[int, bytes]
    ble: tuple[int, bytes]


def _seed(live: LiveServer, people: int) -> tuple[str, list[Visitor], int]:
    """A venue, a pairing code and visitors with personal code keys, committed in the live database."""
    now = datetime.now(UTC)
    with live.app.app_context():
        venue = factories.venue(name="Министерство, корпус 1")
        code = kiosks.create_pairing_code(venue.entrances[0].id, now)
        visitors = []
        for _ in range(people):
            person = factories.person()
            keys = [personal_codes.active_key(person, purpose, now) for purpose in ("qr", "ble")]
            visitors.append(
                Visitor(person.id, *[(k.id, personal_codes.key_bytes(k)) for k in keys])  # type: ignore[arg-type]
            )
        db.session.commit()
        return code, visitors, venue.id


def _kiosk_rows(live: LiveServer, kiosk_id: int) -> list[tuple[int, str, str]]:
    with live.app.app_context():
        rows = db.session.execute(
            select(Checkin.person_id, Checkin.client_id, Checkin.source).where(Checkin.kiosk_id == kiosk_id)
        ).all()
        db.session.remove()
        return [tuple(r) for r in rows]  # type: ignore[misc]


def test_the_kiosk_program_enrols_works_offline_and_delivers_every_checkin_exactly_once(
    live: LiveServer, tmp_path: Path
) -> None:
    code, visitors, _ = _seed(live, 40)

    async def scenario() -> dict[str, Any]:
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            credential = await enrol(http, live.url, code)
            # The network is down: the same credential, pointed at a port where nothing listens.
            offline = dataclasses.replace(credential, server_url=f"http://127.0.0.1:{_closed_port()}")
            kiosk = KioskProgram(_config(tmp_path, offline.server_url), offline, http=http, out=lambda _l: None)
            for v in visitors[:25]:
                shown = codes.personal_code(v.qr[1], v.qr[0], datetime.now(UTC))
                assert kiosk.submit_scan(shown.lower()).is_ok  # caps lock off on the tablet: still fine
            for v in visitors[25:]:
                payload = codes.ble_token_payload(v.ble[1], v.ble[0], datetime.now(UTC))
                kiosk.on_ble_checkin(BleCheckin(codes.parse_ble_payload(payload), -50, "AA", datetime.now(UTC)))
            try:
                await kiosk.sync.drain()
                raise AssertionError("the server should have been unreachable")
            except ServerUnreachableError:
                pass
            queued = kiosk.queue.count()
            await kiosk.close()  # the tablet is switched off while offline
            # Back online, a fresh start over the same state directory.
            kiosk = KioskProgram(_config(tmp_path, live.url), credential, http=http, out=lambda _l: None)
            delivered = await kiosk.sync.drain()
            statuses = {s: kiosk.queue.count(s) for s in ("pending", "accepted", "duplicate", "rejected")}
            await kiosk.close()
            # The answer to the last batch was lost: the kiosk sends everything again.
            with sqlite3.connect(tmp_path / "queue.sqlite3") as conn:
                conn.execute("UPDATE checkins SET status = 'pending', reason = NULL")
            kiosk = KioskProgram(_config(tmp_path, live.url), credential, http=http, out=lambda _l: None)
            resent = await kiosk.sync.drain()
            after_resend = {s: kiosk.queue.count(s) for s in ("pending", "accepted", "duplicate")}
            await kiosk.close()
            return locals()

    r = _run(scenario())
    assert r["queued"] == 40 and r["delivered"] == 40
    assert r["statuses"] == {"pending": 0, "accepted": 40, "duplicate": 0, "rejected": 0}
    assert r["resent"] == 40 and r["after_resend"] == {"pending": 0, "accepted": 0, "duplicate": 40}
    rows = _kiosk_rows(live, r["credential"].kiosk_id)
    assert len(rows) == 40 and len({cid for _, cid, _ in rows}) == 40
    assert sorted(pid for pid, _, _ in rows) == sorted(v.person_id for v in visitors)
    assert sum(1 for *_, source in rows if source == CheckinSource.BLE) == 15


class _KioskThread:
    """The kiosk program on its own event loop, so Playwright's sync API can drive the browser here."""

    def __init__(self, program_factory: Any) -> None:
        self._factory = program_factory
        self.program: KioskProgram | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            self.program = await self._factory(http)
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            run = asyncio.create_task(self.program.run(self._stop))
            while not self.program.screen._server:
                await asyncio.sleep(0.01)
            self._ready.set()
            await run

    def __enter__(self) -> KioskProgram:
        self._thread.start()
        assert self._ready.wait(15)
        assert self.program is not None
        return self.program

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)


def test_the_kiosk_screen_shows_the_rotating_qr_and_turns_green_on_a_scan(
    live: LiveServer, tmp_path: Path, page: Any
) -> None:
    code, visitors, _ = _seed(live, 1)

    async def make(http: httpx.AsyncClient) -> KioskProgram:
        credential = await enrol(http, live.url, code)
        return KioskProgram(_config(tmp_path, live.url), credential, http=http, out=lambda _l: None)

    with _KioskThread(make) as kiosk:
        page.goto(f"http://127.0.0.1:{kiosk.screen.port}/")
        assert page.locator("#venue").inner_text() == "Министерство, корпус 1"
        qr = page.locator("#qr svg")
        qr.wait_for(state="visible")
        box = qr.bounding_box()
        assert box is not None and box["width"] > 150 and box["height"] > 150
        state = page.evaluate("async () => (await fetch('/api/state')).json()")
        prefix = f"{live.url}/k/"
        assert state["qr_url"].startswith(prefix)
        shown = state["qr_url"].removeprefix(prefix)
        cred = kiosk.credential
        assert codes.verify_kiosk_code(shown, cred.rotation_secret, cred.kiosk_id, datetime.now(UTC))
        # A keyboard-wedge scanner types the visitor's personal code into the page, then Enter.
        visitor = visitors[0]
        page.keyboard.type(codes.personal_code(visitor.qr[1], visitor.qr[0], datetime.now(UTC)))
        page.keyboard.press("Enter")
        result = page.locator("#result.ok")
        result.wait_for(state="visible")
        assert "Checked in" in result.inner_text()
        assert (
            page.evaluate("getComputedStyle(document.getElementById('result')).backgroundColor") == "rgb(26, 143, 58)"
        )
        deadline = time.monotonic() + 10
        while not (rows := _kiosk_rows(live, cred.kiosk_id)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid, *_ in rows] == [visitor.person_id]
        # A mangled read shows red and sends nothing.
        page.keyboard.type("P1000NPUCU5AFLVH5HKY")
        page.keyboard.press("Enter")
        page.locator("#result.fail").wait_for(state="visible")


def test_a_phone_with_its_key_from_the_api_is_checked_in_over_bluetooth(live: LiveServer, tmp_path: Path) -> None:
    """The whole Bluetooth chain: the phone gets its key from the server, advertises tokens over a virtual
    radio, the real BleakScanner in the kiosk program hears it at the door, and the batch lands as a visit.
    A phone advertising with a key the server never issued is heard too, and refused by the server."""
    from bumble.link import LocalLink

    from tests.support.ble import phone_ad, virtual_phone
    from venue_kiosk.ble_bumble import BumbleScanner

    with live.app.app_context():
        venue = factories.venue(name="Министерство, корпус 2")
        code = kiosks.create_pairing_code(venue.entrances[0].id, datetime.now(UTC))
        visitor = factories.person()
        device_token = sign_in.remember_device(visitor, datetime.now(UTC))
        visitor_id = visitor.id
        db.session.commit()

    async def scenario() -> dict[str, Any]:
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            got = await http.post(
                f"{live.url}/api/v1/me/bluetooth-key", json={}, headers={"Authorization": f"Bearer {device_token}"}
            )
            assert got.status_code == 201, got.text
            key = got.json()
            credential = await enrol(http, live.url, code)
            link = LocalLink()
            config = dataclasses.replace(_config(tmp_path, live.url), ble_enabled=True, ble_dwell_s=0.3)
            kiosk = KioskProgram(
                config,
                credential,
                http=http,
                out=lambda _l: None,
                ble_backend=BumbleScanner,
                ble_backend_kwargs={"bumble_link": link, "bumble_rssi_for": lambda _address: -45},
            )
            stop = asyncio.Event()
            running = asyncio.create_task(kiosk.run(stop))
            now = datetime.now(UTC)
            await virtual_phone(
                link, "C0:00:00:00:00:21", phone_ad(codes.ble_token_payload(b64decode(key["key"]), key["key_id"], now))
            )
            await virtual_phone(link, "C0:00:00:00:00:22", phone_ad(codes.ble_token_payload(b"u" * 32, 2**31, now)))
            deadline = time.monotonic() + 15
            while kiosk.queue.count("accepted") + kiosk.queue.count("rejected") < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            settled = {s: kiosk.queue.count(s) for s in ("pending", "accepted", "rejected")}
            stop.set()
            await running
            return {"settled": settled, "kiosk_id": credential.kiosk_id}

    r = _run(scenario())
    assert r["settled"] == {"pending": 0, "accepted": 1, "rejected": 1}
    assert [(person, source) for person, _, source in _kiosk_rows(live, r["kiosk_id"])] == [
        (visitor_id, CheckinSource.BLE)
    ]
