"""The kiosk program: wires inputs, the durable queue, sync, heartbeats and the screen into one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from bleak.backends.scanner import BaseBleakScanner

from venue_kiosk.ble import BleCheckin, BleService, ProximityGate
from venue_kiosk.codes import (
    PERSONAL_STEP_S,
    PersonalCodeChecksumError,
    PersonalCodeError,
    kiosk_code,
    parse_personal_code,
    time_step,
)
from venue_kiosk.config import Credential, KioskConfig
from venue_kiosk.local_queue import LocalQueue
from venue_kiosk.readers import KioskScannerError, ScannerReader
from venue_kiosk.screen import ScreenResult, ScreenServer, ScreenState
from venue_kiosk.sync import SyncClient

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


def is_personal_step_plausible(step_low: int, server_now: datetime, window_steps: int) -> bool:
    """Local freshness test on the 12 low bits of the step (the kiosk has no key to check the MAC)."""
    current = time_step(server_now, PERSONAL_STEP_S)
    return any((current + d) % 4096 == step_low for d in range(-window_steps, window_steps + 1))


class KioskProgram:
    """One kiosk over one SQLite queue; several programs in a row over the same file is a restart."""

    def __init__(
        self,
        config: KioskConfig,
        credential: Credential,
        *,
        clock: Callable[[], datetime] = utcnow,
        http: httpx.AsyncClient | None = None,
        ble_backend: type[BaseBleakScanner] | None = None,
        ble_backend_kwargs: dict[str, Any] | None = None,
        readers: list[ScannerReader] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        out: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
    ) -> None:
        self.config = config
        self.credential = credential
        self.clock = clock
        self._out = out
        self._owns_http = http is None
        self.http = http or httpx.AsyncClient(timeout=config.sync_timeout_s)
        self.queue = LocalQueue(config.queue_path)
        self.sync = SyncClient(
            self.queue,
            credential,
            self.http,
            clock,
            batch_size=config.sync_batch_size,
            skew_threshold_s=config.clock_skew_threshold_s,
            backoff_max_s=config.backoff_max_s,
            rng=rng,
            sleep=sleep,
        )
        self.state = ScreenState(
            venue_name=credential.venue_name,
            entrance_name=credential.entrance_name,
            qr_url=self.qr_url,
            refresh=self._refresh_state,
        )
        self.gate = ProximityGate(config.ble_rssi_threshold, config.ble_dwell_s, config.ble_dedupe_s)
        self.ble = BleService(
            self.gate,
            self.on_ble_checkin,
            clock,
            backend=ble_backend,
            backend_kwargs=ble_backend_kwargs,
            start_attempts=config.ble_start_attempts,
            watchdog_s=config.ble_watchdog_s,
            window_steps=config.scan_window_steps,
            skew_s=self.skew_s,
            sleep=sleep,
        )
        self.readers = readers or []
        self.screen = ScreenServer(self.state, clock, self.submit_scan, config.screen_host, config.screen_port)
        self._recent_scans: dict[int, datetime] = {}

    def skew_s(self) -> float:
        return self.sync.status.skew_s or 0.0

    def server_now(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.skew_s())

    def qr_url(self, now: datetime) -> str:
        # The code is computed on the server's clock: a kiosk whose clock drifted would
        # otherwise show codes the server rejects as stale.
        code = kiosk_code(
            self.credential.rotation_secret, self.credential.kiosk_id, self.server_now(now), self.config.kiosk_step_s
        )
        return f"{self.credential.checkin_base_url}/k/{code}"

    def submit_scan(self, raw: str) -> ScreenResult:
        """One line from a code scanner: reject mangled input before anything is queued."""
        now = self.clock()
        try:
            parsed = parse_personal_code(raw)
        except PersonalCodeChecksumError:
            return self.state.show_result(False, "Код не распознан / Code not recognised", "Scan again", now)
        except PersonalCodeError as exc:
            return self.state.show_result(False, "Код не распознан / Code not recognised", str(exc), now)
        if not is_personal_step_plausible(parsed.step_low, self.server_now(now), self.config.scan_window_steps):
            return self.state.show_result(False, "Код устарел / Code expired", "Refresh the code on your phone", now)
        last = self._recent_scans.get(parsed.person_ref)
        if last is not None and now - last < timedelta(seconds=60):
            # Scanners often read the same phone twice in a row; one check-in is enough.
            return self.state.show_result(True, "Вы отмечены / Checked in", "", now)
        self._recent_scans = {k: t for k, t in self._recent_scans.items() if now - t < timedelta(seconds=60)}
        self._recent_scans[parsed.person_ref] = now
        self.queue.enqueue("kiosk_scanner", parsed.text, now)
        self._after_enqueue()
        return self.state.show_result(True, "Вы отмечены / Checked in", "", now)

    def on_ble_checkin(self, checkin: BleCheckin) -> None:
        self.queue.enqueue("ble", checkin.token.text, checkin.observed_at)
        self._after_enqueue()
        self.state.show_result(True, "Вы отмечены / Checked in", "Bluetooth", checkin.observed_at)

    def _after_enqueue(self) -> None:
        self.state.queue_length = self.queue.count()
        self.sync.wakeup.set()

    async def _read_scanner(self, reader: ScannerReader) -> None:
        try:
            async for line in reader.lines():
                self.submit_scan(line)
        except KioskScannerError as exc:
            self.sync.health.is_scanner_ok = False
            self._notice(f"Scanner {reader.name} stopped: {exc}")
        finally:
            await reader.close()

    def _notice(self, line: str) -> None:
        self._out(line)
        self.state.notices.append(line)

    def _refresh_state(self) -> None:
        self.state.is_online = self.sync.status.is_online
        self.state.is_revoked = self.sync.status.is_revoked
        self.state.queue_length = self.queue.count()
        self.sync.health.is_ble_ok = self.ble.is_ok

    async def _refresh_status(self) -> None:
        # Heartbeats read the health flags; the screen refreshes itself on every poll.
        ticks = 0
        while True:
            self._refresh_state()
            if ticks % 7200 == 0:
                # Settled rows are only kept for troubleshooting: visitors' tokens do not linger here.
                self.queue.purge_settled(self.clock(), timedelta(days=1))
            ticks += 1
            await asyncio.sleep(0.5)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until `stop` is set (or forever); every input method fails on its own."""
        stop = stop or asyncio.Event()
        await self.screen.start()
        self._out(f"Kiosk screen on http://{self.config.screen_host}:{self.screen.port}/")
        tasks: list[asyncio.Task[Any]] = [
            asyncio.create_task(self.sync.run(self.config.sync_interval_s), name="sync"),
            asyncio.create_task(self.sync.heartbeat_loop(self.config.heartbeat_interval_s), name="heartbeat"),
            asyncio.create_task(self._refresh_status(), name="status"),
        ]
        self.sync.health.is_scanner_ok = bool(self.readers)
        tasks += [asyncio.create_task(self._read_scanner(r), name=f"reader-{r.name}") for r in self.readers]
        if self.config.ble_enabled:
            is_started = await self.ble.start()
            self._out(self.ble.status_line)
            if not is_started:
                self.state.notices.append("Bluetooth unavailable")
            tasks += [asyncio.create_task(self.ble.consume(), name="ble")]
            if is_started:
                tasks += [asyncio.create_task(self.ble.watchdog(), name="ble-watchdog")]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.close()

    async def close(self) -> None:
        await self.ble.stop()
        await self.screen.close()
        if self._owns_http:
            await self.http.aclose()
        self.queue.close()
