"""Tests for BLE check-in: advertisement parsing, the proximity gate, and the real BleakScanner on bumble."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakDBusError
from bumble.link import LocalLink

from tests.support.ble import phone_ad, virtual_phone
from venue_kiosk import codes
from venue_kiosk.ble import BleCheckin, BleService, ProximityGate
from venue_kiosk.ble_bumble import BumbleScanner, advertisement_data_from_ad
from venue_kiosk.local_queue import LocalQueue

NOW = datetime(2025, 3, 2, 9, 30, 15, tzinfo=UTC)
KEY = bytes(range(32))

# Advertising data captured from the virtual link: flags, complete 16-bit UUID list (FFF7),
# service data for FFF7 holding the token of key id 42 at NOW.
CAPTURED_PHONE_AD = bytes.fromhex("020106 0303f7ff 1616f7ff 010000002a037578b464f314444f1859032b1c")
# Another device in the hall: manufacturer data (company 0x004C) and a 128-bit service UUID.
CAPTURED_OTHER_AD = bytes.fromhex("02011a 0aff4c001005031c2e4e6d 1107fb349b5f80000080001000000a180000 05096b657973")


def test_captured_phone_advertisement_parses_into_a_token() -> None:
    adv = advertisement_data_from_ad(CAPTURED_PHONE_AD, rssi=-48)
    assert adv.service_uuids == [codes.BLE_SERVICE_UUID]
    token = codes.parse_ble_service_data(adv)
    assert token is not None and (token.key_id, token.step) == (42, codes.time_step(NOW, 30))
    # bleak's own objects, as a detection callback receives them
    device = BLEDevice("C0:00:00:00:00:01", None, None)
    assert device.address and codes.parse_ble_service_data(adv._replace(rssi=-95)) == token


def test_other_devices_advertisements_are_parsed_and_ignored() -> None:
    adv = advertisement_data_from_ad(CAPTURED_OTHER_AD, rssi=-70)
    assert adv.manufacturer_data == {0x004C: bytes.fromhex("1005031c2e4e6d")}
    assert adv.service_uuids == ["0000180a-0000-1000-8000-00805f9b34fb"]
    assert adv.local_name == "keys"
    assert codes.parse_ble_service_data(adv) is None


def test_truncated_or_corrupted_service_data_yields_no_token() -> None:
    corrupted = bytearray(CAPTURED_PHONE_AD)
    corrupted[-5] ^= 0xFF
    assert codes.parse_ble_service_data(advertisement_data_from_ad(bytes(corrupted), rssi=-40)) is None
    assert codes.parse_ble_service_data(advertisement_data_from_ad(CAPTURED_PHONE_AD[:-3], rssi=-40)) is None
    empty = AdvertisementData(None, {}, {}, [], None, -40, ())
    assert codes.parse_ble_service_data(empty) is None


def test_gate_needs_closeness_for_the_dwell_and_counts_once_per_dedupe_period() -> None:
    gate = ProximityGate(rssi_threshold=-65, dwell_s=2.0, dedupe_s=600.0)
    t = NOW
    assert not gate.observe(1, -50, t)
    assert not gate.observe(1, -80, t + timedelta(seconds=1))  # too far: does not count
    assert gate.observe(1, -50, t + timedelta(seconds=2))
    assert not any(gate.observe(1, -40, t + timedelta(seconds=s)) for s in range(3, 300))
    assert not gate.observe(1, -50, t + timedelta(minutes=11))  # a new visit starts its own dwell
    assert gate.observe(1, -50, t + timedelta(minutes=11, seconds=2))


def test_gate_restarts_the_dwell_after_a_gap() -> None:
    gate = ProximityGate(rssi_threshold=-65, dwell_s=2.0, dedupe_s=600.0, max_gap_s=5.0)
    assert not gate.observe(1, -50, NOW)
    assert not gate.observe(1, -50, NOW + timedelta(seconds=10))  # walked past, came back later
    assert not gate.observe(1, -50, NOW + timedelta(seconds=11))
    assert gate.observe(1, -50, NOW + timedelta(seconds=12))


def test_gate_never_admits_a_phone_that_stays_far() -> None:
    gate = ProximityGate(rssi_threshold=-65, dwell_s=1.0, dedupe_s=600.0)
    assert not any(gate.observe(1, -66, NOW + timedelta(seconds=s)) for s in range(60))


def test_real_bleak_scanner_on_bumble_checks_in_only_the_close_fresh_valid_phone(tmp_path: Path) -> None:
    async def scenario() -> tuple[LocalQueue, BleService]:
        now = datetime.now(UTC)
        link = LocalLink()
        rssi = {"C0:00:00:00:00:01": -45, "C0:00:00:00:00:02": -88, "C0:00:00:00:00:03": -45, "C0:00:00:00:00:04": -45}
        queue = LocalQueue(tmp_path / "q.sqlite3")

        def enqueue(checkin: BleCheckin) -> None:
            queue.enqueue("ble", checkin.token.text, checkin.observed_at)

        service = BleService(
            ProximityGate(rssi_threshold=-65, dwell_s=0.5, dedupe_s=600.0),
            enqueue,
            lambda: datetime.now(UTC),
            backend=BumbleScanner,
            backend_kwargs={"bumble_link": link, "bumble_rssi_for": lambda a: rssi.get(a, -100)},
        )
        assert await service.start()
        consumer = asyncio.create_task(service.consume())
        corrupted = bytearray(codes.ble_token_payload(b"c" * 32, 3, now))
        corrupted[9] ^= 0x40
        await virtual_phone(link, "C0:00:00:00:00:01", phone_ad(codes.ble_token_payload(KEY, 1, now)))  # at the door
        await virtual_phone(link, "C0:00:00:00:00:02", phone_ad(codes.ble_token_payload(b"f" * 32, 2, now)))  # far away
        await virtual_phone(link, "C0:00:00:00:00:03", phone_ad(bytes(corrupted)))
        old = codes.ble_token_payload(b"r" * 32, 4, now - timedelta(minutes=10))  # a recording replayed
        await virtual_phone(link, "C0:00:00:00:00:04", phone_ad(old))
        await asyncio.sleep(1.5)  # every phone keeps advertising 10 times a second
        consumer.cancel()
        await service.stop()
        return queue, service

    queue, service = asyncio.run(scenario())
    items = queue.pending(100)
    queue.close()
    assert [codes.parse_ble_token_text(i.token).key_id for i in items] == [1]
    assert items[0].method == "ble"
    assert service.dropped_stale > 0


def test_watchdog_restarts_a_silent_scanner_which_then_hears_phones(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, list[BleCheckin]]:
        link = LocalLink()
        seen: list[BleCheckin] = []
        service = BleService(
            ProximityGate(rssi_threshold=-65, dwell_s=0.0, dedupe_s=600.0),
            seen.append,
            lambda: datetime.now(UTC),
            backend=BumbleScanner,
            backend_kwargs={"bumble_link": link},
            watchdog_s=0.2,
        )
        assert await service.start()
        consumer = asyncio.create_task(service.consume())
        await asyncio.sleep(0.3)
        assert await service.restart_if_silent()
        await virtual_phone(link, "C0:00:00:00:00:09", phone_ad(codes.ble_token_payload(KEY, 9, datetime.now(UTC))))
        await asyncio.sleep(0.5)
        assert not await service.restart_if_silent()  # it hears the phone now
        consumer.cancel()
        await service.stop()
        return service.restarts, seen

    restarts, seen = asyncio.run(scenario())
    assert restarts == 1
    assert [c.token.key_id for c in seen] == [9]


class _NoAdapterScanner(BaseBleakScanner):
    """Behaves like the BlueZ backend on a machine without D-Bus or BlueZ."""

    errors: ClassVar[list[Exception]] = []

    def __init__(self, detection_callback: object, service_uuids: object, *args: object, **kwargs: object) -> None:
        super().__init__(None, None)

    async def start(self) -> None:
        raise self.errors.pop(0)

    async def stop(self) -> None:
        return None


def test_missing_adapter_gives_one_clear_line_after_bounded_retries() -> None:
    async def no_sleep(_s: float) -> None:
        return None

    _NoAdapterScanner.errors = [
        FileNotFoundError(2, "No such file or directory"),
        BleakDBusError("org.freedesktop.DBus.Error.ServiceUnknown", []),
        FileNotFoundError(2, "No such file or directory"),
    ]
    service = BleService(
        ProximityGate(-65, 1.0, 60.0), lambda c: None, lambda: NOW, backend=_NoAdapterScanner, sleep=no_sleep
    )
    assert asyncio.run(service.start()) is False
    assert _NoAdapterScanner.errors == []
    assert service.status_line.startswith("Bluetooth unavailable (FileNotFoundError")
    assert "continuing with the code scanner" in service.status_line
    assert not service.is_ok


@pytest.mark.parametrize("kwargs", [{}, {"bumble_link": LocalLink(), "bumble_transport": "usb:0"}])
def test_bumble_scanner_needs_exactly_one_source(kwargs: dict[str, object]) -> None:
    from bleak.exc import BleakError

    with pytest.raises(BleakError, match="exactly one"):
        BumbleScanner(None, None, **kwargs)  # type: ignore[arg-type]
