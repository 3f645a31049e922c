"""HTTP client for the kiosk API: enrolment, batched check-in upload with backoff, heartbeats, clock skew."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from venue_kiosk import __version__
from venue_kiosk.config import Credential, decode_secret
from venue_kiosk.local_queue import LocalQueue, QueuedCheckin

log = logging.getLogger(__name__)

MAX_BATCH = 500  # the server refuses larger batches


class SyncError(Exception):
    """A request to the server failed."""


class ServerUnreachableError(SyncError):
    """Transport failure or a 5xx: worth retrying later."""


class CredentialRevokedError(SyncError):
    """401: the kiosk was revoked; it must say so and stop syncing."""


class EnrolmentError(SyncError):
    """The server refused the pairing code."""


def parse_server_time(text: Any) -> datetime:
    try:
        value = datetime.fromisoformat(str(text))
    except ValueError as exc:
        raise SyncError(f"bad server_time {text!r}") from exc
    if value.tzinfo is None:
        raise SyncError("server_time has no UTC offset")
    return value


def measure_skew(sent_at: datetime, received_at: datetime, server_time: datetime) -> float:
    """Seconds to add to the local clock to get the server's, assuming a symmetric round trip."""
    midpoint = sent_at + (received_at - sent_at) / 2
    return (server_time - midpoint).total_seconds()


def backoff_delay(failures: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, so a fleet of kiosks
    coming back after a city-wide outage does not hit the server in lockstep."""
    ceiling = float(min(cap_s, base_s * 2 ** min(failures, 30)))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def item_payload(item: QueuedCheckin, skew_s: float | None, threshold_s: float) -> dict[str, Any]:
    """One check-in as sent; a skewed clock is corrected by the measured offset and flagged."""
    payload: dict[str, Any] = {
        "client_id": item.client_id,
        "method": item.method,
        "token": item.token,
        "observed_at": item.observed_at.isoformat(),
    }
    if skew_s is not None and abs(skew_s) > threshold_s:
        payload["observed_at"] = (item.observed_at + timedelta(seconds=skew_s)).isoformat()
        payload["clock_skew_s"] = round(skew_s, 3)
    return payload


async def enrol(http: httpx.AsyncClient, server_url: str, pairing_code: str) -> Credential:
    """Exchange a pairing code for the kiosk's credential (POST /api/v1/kiosk/enrol)."""
    url = server_url.rstrip("/") + "/api/v1/kiosk/enrol"
    try:
        resp = await http.post(url, json={"pairing_code": pairing_code})
    except httpx.HTTPError as exc:
        raise ServerUnreachableError(f"cannot reach {url}: {exc}") from exc
    if resp.status_code != 201:
        raise EnrolmentError(f"enrolment refused ({resp.status_code}): {_error_text(resp)}")
    try:
        body = resp.json()
        return Credential(
            server_url=server_url.rstrip("/"),
            kiosk_id=int(body["kiosk_id"]),
            credential=str(body["credential"]),
            rotation_secret=decode_secret(str(body["rotation_secret"])),
            venue_name=str(body["venue_name"]),
            entrance_name=str(body["entrance_name"]),
            checkin_base_url=str(body["checkin_base_url"]).rstrip("/"),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise EnrolmentError(f"unexpected enrolment response: {exc}") from exc


def _error_text(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("error", resp.text))
    except ValueError:
        return resp.text[:200]


@dataclass
class Health:
    """What heartbeats report; the program updates it as inputs come and go."""

    is_ble_ok: bool = False
    is_scanner_ok: bool = False
    version: str = __version__


@dataclass
class SyncStatus:
    is_online: bool = False
    is_revoked: bool = False
    skew_s: float | None = None
    failures: int = 0
    last_error: str = ""
    sent: int = 0


class SyncClient:
    """Drains the local queue to the server; owns the online/revoked/skew status shown on screen."""

    def __init__(
        self,
        queue: LocalQueue,
        credential: Credential,
        http: httpx.AsyncClient,
        clock: Callable[[], datetime],
        *,
        batch_size: int = MAX_BATCH,
        skew_threshold_s: float = 5.0,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 300.0,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._queue = queue
        self._cred = credential
        self._http = http
        self._clock = clock
        self._batch_size = min(batch_size, MAX_BATCH)
        self._skew_threshold_s = skew_threshold_s
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._rng = rng or random.Random()
        self._sleep = sleep
        self.status = SyncStatus()
        self.health = Health()
        self.wakeup = asyncio.Event()

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self._cred.server_url}/api/v1/kiosk/{path}"
        sent_at = self._clock()
        body = {"sent_at": sent_at.isoformat(), **body}
        try:
            resp = await self._http.post(url, json=body, headers={"Authorization": f"Bearer {self._cred.credential}"})
        except httpx.HTTPError as exc:
            raise ServerUnreachableError(f"{type(exc).__name__}: {exc}") from exc
        received_at = self._clock()
        if resp.status_code == 401:
            self.status.is_revoked = True
            raise CredentialRevokedError("the server revoked this kiosk's credential")
        if resp.status_code >= 500 or resp.status_code == 429:
            raise ServerUnreachableError(f"server answered {resp.status_code}")
        if resp.status_code != 200:
            # A 4xx other than 401 means this program and the server disagree; keep the data and retry.
            raise SyncError(f"server refused {path} ({resp.status_code}): {_error_text(resp)}")
        try:
            data = resp.json()
        except ValueError as exc:
            raise SyncError(f"server sent invalid JSON for {path}") from exc
        if not isinstance(data, dict):
            raise SyncError(f"server sent a non-object for {path}")
        self.status.skew_s = measure_skew(sent_at, received_at, parse_server_time(data.get("server_time")))
        self.status.is_online = True
        return dict(data)

    async def heartbeat(self) -> None:
        await self._post(
            "heartbeat",
            {
                "queue_length": self._queue.count(),
                "ble_ok": self.health.is_ble_ok,
                "scanner_ok": self.health.is_scanner_ok,
                "version": self.health.version,
            },
        )

    async def heartbeat_loop(self, interval_s: float) -> None:
        """Heartbeats forever (also refreshing the skew); stops when the credential is revoked."""
        while not self.status.is_revoked:
            try:
                await self.heartbeat()
            except CredentialRevokedError:
                return
            except SyncError as exc:
                self.status.is_online = False
                log.info("heartbeat failed: %s", exc)
            await self._sleep(interval_s)

    async def send_batch(self) -> int:
        """Post one batch of pending check-ins; returns how many were settled (0 when idle)."""
        items = self._queue.pending(self._batch_size)
        if not items:
            return 0
        if self.status.skew_s is None:
            # First contact after start: measure the clock before stamping corrected times.
            await self.heartbeat()
        self._queue.mark_attempted(i.client_id for i in items)
        payload = [item_payload(i, self.status.skew_s, self._skew_threshold_s) for i in items]
        data = await self._post("checkins", {"items": payload})
        sent_ids = {i.client_id for i in items}
        verdicts: dict[str, tuple[str, str | None]] = {}
        for result in data.get("results", []):
            if isinstance(result, dict) and result.get("client_id") in sent_ids:
                verdicts[str(result["client_id"])] = (str(result.get("status")), result.get("reason"))
        settled = self._queue.settle(verdicts, self._clock())
        self.status.sent += settled
        return settled

    async def drain(self) -> int:
        """Send batches until the queue is empty or a batch settles nothing."""
        total = 0
        while (settled := await self.send_batch()) > 0:
            total += settled
        return total

    async def run(self, interval_s: float) -> None:
        """Forever: drain, then wait for the interval or a new check-in; back off on failures.

        Returns (and stops syncing) only when the credential is revoked.
        """
        while True:
            try:
                await self.drain()
            except CredentialRevokedError as exc:
                self.status.last_error = str(exc)
                log.error("%s; sync stopped", exc)
                return
            except SyncError as exc:
                self.status.is_online = not isinstance(exc, ServerUnreachableError)
                self.status.failures += 1
                self.status.last_error = str(exc)
                delay = backoff_delay(self.status.failures, self._backoff_base_s, self._backoff_max_s, self._rng)
                log.warning("sync failed (%s); retrying in %.1f s", exc, delay)
                await self._sleep(delay)
                continue
            self.status.failures = 0
            self.status.last_error = ""
            self.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), interval_s)
