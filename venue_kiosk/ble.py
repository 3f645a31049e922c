"""Bluetooth check-in: the scanner factory, start retries, a silence watchdog and the proximity gate."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError

from venue_kiosk.codes import BleToken, is_ble_step_fresh, parse_ble_service_data

log = logging.getLogger(__name__)

DetectionCallback = Callable[[BLEDevice, AdvertisementData], None]


class KioskBleError(Exception):
    """The Bluetooth scanner could not be started."""


def make_ble_scanner(
    callback: DetectionCallback, backend: type[BaseBleakScanner] | None = None, **backend_kwargs: Any
) -> BleakScanner:
    """The one place a BleakScanner is built; `backend=` is the seam for bumble and tests.

    No service UUID filter: the watchdog needs to hear the background chatter of every nearby
    device to tell a dead scanner from an empty hall; our tokens are picked out by the parser.
    """
    return BleakScanner(detection_callback=callback, backend=backend, **backend_kwargs)


@dataclass
class _Presence:
    close_since: datetime
    last_close: datetime


@dataclass
class ProximityGate:
    """Decides when a phone's sightings amount to one check-in (pure; `now` comes in).

    A phone must stay at or above `rssi_threshold` for `dwell_s` (sightings no more than
    `max_gap_s` apart, since phones advertise every 0.1-1 s and some are lost), and then counts
    once per `dedupe_s` for the same token subject (key id), however long it keeps advertising.
    """

    rssi_threshold: int
    dwell_s: float
    dedupe_s: float
    max_gap_s: float = 5.0
    _presence: dict[int, _Presence] = field(default_factory=dict)
    _checked_in_at: dict[int, datetime] = field(default_factory=dict)

    def observe(self, subject: int, rssi: int, now: datetime) -> bool:
        """True exactly when this sighting completes a check-in for `subject`."""
        last = self._checked_in_at.get(subject)
        if last is not None and now - last < timedelta(seconds=self.dedupe_s):
            return False
        if rssi < self.rssi_threshold:
            return False
        presence = self._presence.get(subject)
        if presence is None or now - presence.last_close > timedelta(seconds=self.max_gap_s):
            presence = self._presence[subject] = _Presence(now, now)
        presence.last_close = now
        if now - presence.close_since < timedelta(seconds=self.dwell_s):
            return False
        self._checked_in_at[subject] = now
        del self._presence[subject]
        return True

    def prune(self, now: datetime) -> None:
        """Forget passers-by and expired dedupe entries so memory stays flat over months."""
        gap, dedupe = timedelta(seconds=self.max_gap_s), timedelta(seconds=self.dedupe_s)
        self._presence = {k: p for k, p in self._presence.items() if now - p.last_close <= gap}
        self._checked_in_at = {k: t for k, t in self._checked_in_at.items() if now - t < dedupe}


@dataclass(frozen=True, slots=True)
class BleCheckin:
    token: BleToken
    rssi: int
    address: str
    observed_at: datetime


class BleService:
    """Owns the scanner's life: bounded start retries, watchdog restarts, and the sighting queue."""

    def __init__(
        self,
        gate: ProximityGate,
        on_checkin: Callable[[BleCheckin], None],
        clock: Callable[[], datetime],
        *,
        backend: type[BaseBleakScanner] | None = None,
        backend_kwargs: dict[str, Any] | None = None,
        start_attempts: int = 3,
        retry_delay_s: float = 1.0,
        watchdog_s: float = 30.0,
        window_steps: int = 1,
        skew_s: Callable[[], float] = lambda: 0.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._gate = gate
        self._on_checkin = on_checkin
        self._clock = clock
        self._backend = backend
        self._backend_kwargs = backend_kwargs or {}
        self._start_attempts = start_attempts
        self._retry_delay_s = retry_delay_s
        self._watchdog_s = watchdog_s
        self._window_steps = window_steps
        self._skew_s = skew_s
        self._sleep = sleep
        self._sightings: asyncio.Queue[tuple[AdvertisementData, str, datetime]] = asyncio.Queue(maxsize=10_000)
        self._scanner: BleakScanner | None = None
        self._last_heard: datetime | None = None
        self.is_ok = False
        self.restarts = 0
        self.dropped_stale = 0
        self.status_line = ""

    def _on_detection(self, device: BLEDevice, adv: AdvertisementData) -> None:
        # Runs inside the backend's event dispatch: enqueue and return, never parse or do I/O here.
        now = self._clock()
        self._last_heard = now
        # On a flood of sightings drop this one: the same phones advertise again within a second.
        with contextlib.suppress(asyncio.QueueFull):
            self._sightings.put_nowait((adv, device.address, now))

    async def start(self) -> bool:
        """Try a bounded number of times; False (with one clear status line) when Bluetooth is absent."""
        last_exc: BaseException | None = None
        for attempt in range(1, self._start_attempts + 1):
            scanner = make_ble_scanner(self._on_detection, self._backend, **self._backend_kwargs)
            try:
                await scanner.start()
            except (BleakError, OSError) as exc:
                # Without an adapter: FileNotFoundError (no system D-Bus) or BleakDBusError (no BlueZ).
                last_exc = exc
                if attempt < self._start_attempts:
                    await self._sleep(self._retry_delay_s * attempt)
                continue
            self._scanner = scanner
            self._last_heard = self._clock()
            self.is_ok = True
            self.status_line = "Bluetooth scanning"
            return True
        self.is_ok = False
        self.status_line = (
            f"Bluetooth unavailable ({type(last_exc).__name__}: {last_exc}); "
            "continuing with the code scanner and the on-screen QR"
        )
        return False

    async def stop(self) -> None:
        if self._scanner is not None:
            scanner, self._scanner = self._scanner, None
            try:
                await scanner.stop()
            except (BleakError, OSError) as exc:
                log.warning("Bluetooth scanner did not stop cleanly: %s", exc)
        self.is_ok = False

    async def restart_if_silent(self) -> bool:
        """Watchdog step: restart a scanner that has heard nothing for `watchdog_s` seconds."""
        if self._scanner is None or self._last_heard is None:
            return False
        if (self._clock() - self._last_heard).total_seconds() < self._watchdog_s:
            return False
        log.warning("Bluetooth scanner silent for %.0f s, restarting it", self._watchdog_s)
        await self.stop()
        self.restarts += 1
        await self.start()
        return True

    def handle_sighting(self, adv: AdvertisementData, address: str, now: datetime) -> BleCheckin | None:
        """Parse and gate one sighting; pure apart from the gate's memory."""
        token = parse_ble_service_data(adv)
        if token is None:
            return None
        # Freshness is judged on the server's clock (local clock plus measured skew), since a
        # tablet clock that drifted a minute would otherwise drop every genuine phone.
        server_now = now + timedelta(seconds=self._skew_s())
        if not is_ble_step_fresh(token, server_now, self._window_steps):
            # A replayed recording of an old advertisement: drop it here, the server would too.
            self.dropped_stale += 1
            return None
        if not self._gate.observe(token.key_id, adv.rssi, now):
            return None
        return BleCheckin(token, adv.rssi, address, now)

    async def consume(self) -> None:
        """Drain sightings forever; run as a task next to `watchdog()`."""
        while True:
            adv, address, seen_at = await self._sightings.get()
            checkin = self.handle_sighting(adv, address, seen_at)
            if checkin is not None:
                self._on_checkin(checkin)

    async def watchdog(self, interval_s: float = 5.0) -> None:
        while True:
            await self._sleep(interval_s)
            await self.restart_if_silent()
            self._gate.prune(self._clock())
