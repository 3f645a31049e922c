"""Tests for the local screen served over HTTP and for the program's start-up without Bluetooth."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from kiosk_fakes import FakeKioskServer, kiosk_server, make_config, make_credential

from venue_kiosk import codes
from venue_kiosk.app import KioskProgram

__all__ = ["kiosk_server"]

KEY = bytes(range(32))


def test_screen_shows_the_rotating_qr_and_reflects_checkin_results(
    tmp_path: Path, kiosk_server: FakeKioskServer
) -> None:
    printed: list[str] = []

    async def scenario() -> dict[str, Any]:
        async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
            kiosk = KioskProgram(
                make_config(tmp_path, kiosk_server.url, ble_enabled=True, ble_start_attempts=1),
                make_credential(kiosk_server.url),
                http=http,
                out=printed.append,
            )
            stop = asyncio.Event()
            run = asyncio.create_task(kiosk.run(stop))
            while not printed:
                await asyncio.sleep(0.01)
            base = f"http://127.0.0.1:{kiosk.screen.port}"
            page = await http.get(base + "/")
            svg = await http.get(base + "/qr.svg")
            state0 = (await http.get(base + "/api/state")).json()
            good = codes.personal_code(KEY, 77, datetime.now(UTC))
            ok = (await http.post(base + "/api/scan", content=good)).json()
            state1 = (await http.get(base + "/api/state")).json()
            bad = (await http.post(base + "/api/scan", content=good[:-1] + "Y")).json()
            state2 = (await http.get(base + "/api/state")).json()
            foreign = await http.get(base + "/api/state", headers={"Host": "evil.example"})
            for _ in range(200):  # the sync loop sends the queued check-in on its own
                if kiosk_server.items:
                    break
                await asyncio.sleep(0.02)
            state3 = (await http.get(base + "/api/state")).json()
            stop.set()
            await run
            return locals()

    r = asyncio.run(scenario())
    assert r["page"].status_code == 200 and "<svg" in r["page"].text and "Театр «Школа»" in r["page"].text
    assert "http://" not in r["page"].text.replace("http://www.w3.org/2000/svg", "")  # no external assets
    assert r["svg"].headers["content-type"] == "image/svg+xml" and r["svg"].text.startswith("<svg")
    code = r["state0"]["qr_url"].removeprefix("https://checkin.example.test/k/")
    assert codes.verify_kiosk_code(code, make_credential("").rotation_secret, 7, datetime.now(UTC))
    assert r["ok"]["is_ok"] and r["state1"]["result"]["is_ok"] is True
    assert not r["bad"]["is_ok"] and r["state2"]["result"]["is_ok"] is False
    assert r["state2"]["result"]["seq"] == r["state1"]["result"]["seq"] + 1
    assert r["foreign"].status_code == 403
    assert len(kiosk_server.items) == 1 and r["state3"]["online"] is True
    # No adapter here: one clear line, and the other inputs kept working.
    assert any(line.startswith("Bluetooth unavailable") for line in printed)
    assert "Bluetooth unavailable" in r["state3"]["notices"]


def test_screen_shows_offline_while_the_server_is_unreachable(tmp_path: Path) -> None:
    async def scenario() -> dict[str, Any]:
        async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
            kiosk = KioskProgram(
                make_config(tmp_path, "http://127.0.0.1:9"),
                make_credential("http://127.0.0.1:9"),
                http=http,
                out=lambda line: None,
            )
            stop = asyncio.Event()
            run = asyncio.create_task(kiosk.run(stop))
            await asyncio.sleep(0.8)
            state = (await http.get(f"http://127.0.0.1:{kiosk.screen.port}/api/state")).json()
            stop.set()
            await run
            return state

    state = asyncio.run(scenario())
    assert state["online"] is False and state["revoked"] is False
