"""A bleak scanner backend on a bumble host: an in-process virtual controller or any bumble HCI transport."""

from __future__ import annotations

import dataclasses
import logging
import struct
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.exc import BleakError
from bleak.uuids import normalize_uuid_16, normalize_uuid_32, normalize_uuid_str
from bumble import hci
from bumble.controller import Controller
from bumble.device import Advertisement, Device
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport import open_transport
from bumble.transport.common import AsyncPipeSink, Transport

log = logging.getLogger(__name__)

_SCANNER_ADDRESS = "F0:F1:F2:F3:F4:F5"
_R = TypeVar("_R", hci.HCI_LE_Advertising_Report_Event.Report, hci.HCI_LE_Extended_Advertising_Report_Event.Report)


def _uuid128(raw: bytes) -> str:
    # 128-bit UUIDs travel little-endian in advertising data.
    h = raw[::-1].hex()
    return normalize_uuid_str(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")


def advertisement_data_from_ad(ad: bytes, rssi: int, platform_data: tuple[Any, ...] = ()) -> AdvertisementData:
    """Turn raw AD structures (Core Spec Vol 3 Part C §11) into bleak's AdvertisementData.

    Pure, so captured advertisement bytes can be replayed in tests. A structure cut short is
    ignored, as BlueZ does; a repeated structure (advertisement plus scan response) keeps the last.
    """
    local_name: str | None = None
    manufacturer: dict[int, bytes] = {}
    service_data: dict[str, bytes] = {}
    service_uuids: list[str] = []
    tx_power: int | None = None
    i = 0
    while i < len(ad):
        length = ad[i]
        if length == 0:  # early terminator: the rest of a fixed 31-byte buffer is padding
            break
        if i + 1 + length > len(ad):
            break
        ad_type, value = ad[i + 1], ad[i + 2 : i + 1 + length]
        i += 1 + length
        if ad_type in (0x02, 0x03):
            service_uuids += [normalize_uuid_16(u) for (u,) in struct.iter_unpack("<H", value[: len(value) // 2 * 2])]
        elif ad_type in (0x04, 0x05):
            service_uuids += [normalize_uuid_32(u) for (u,) in struct.iter_unpack("<I", value[: len(value) // 4 * 4])]
        elif ad_type in (0x06, 0x07):
            service_uuids += [_uuid128(value[j : j + 16]) for j in range(0, len(value) - 15, 16)]
        elif ad_type in (0x08, 0x09):
            if ad_type == 0x09 or local_name is None:
                local_name = value.decode("utf-8", errors="replace")
        elif ad_type == 0x0A and len(value) == 1:
            tx_power = struct.unpack("b", value)[0]
        elif ad_type == 0x16 and len(value) >= 2:
            service_data[normalize_uuid_16(struct.unpack_from("<H", value)[0])] = bytes(value[2:])
        elif ad_type == 0x20 and len(value) >= 4:
            service_data[normalize_uuid_32(struct.unpack_from("<I", value)[0])] = bytes(value[4:])
        elif ad_type == 0x21 and len(value) >= 16:
            service_data[_uuid128(value[:16])] = bytes(value[16:])
        elif ad_type == 0xFF and len(value) >= 2:
            manufacturer[struct.unpack_from("<H", value)[0]] = bytes(value[2:])
    return AdvertisementData(
        local_name=local_name,
        manufacturer_data=manufacturer,
        service_data=service_data,
        service_uuids=list(dict.fromkeys(service_uuids)),
        tx_power=tx_power,
        rssi=rssi,
        platform_data=platform_data,
    )


class RadioController(Controller):
    """A virtual controller whose advertising reports carry an RSSI chosen per advertiser.

    bumble's virtual controller reports every advertisement at a fixed -50 dBm; this is the seam
    where a test (or a demo) places phones nearer or farther: `rssi_for(advertiser_address)`.
    """

    def __init__(self, name: str, *, link: LocalLink, public_address: str, rssi_for: Callable[[str], int]) -> None:
        super().__init__(name, link=link, public_address=public_address)
        self.rssi_for = rssi_for

    def send_hci_packet(self, packet: hci.HCI_Packet) -> None:
        if isinstance(packet, hci.HCI_LE_Advertising_Report_Event):
            packet = hci.HCI_LE_Advertising_Report_Event([self._with_rssi(r) for r in packet.reports])
        elif isinstance(packet, hci.HCI_LE_Extended_Advertising_Report_Event):
            packet = hci.HCI_LE_Extended_Advertising_Report_Event([self._with_rssi(r) for r in packet.reports])
        super().send_hci_packet(packet)

    def _with_rssi(self, report: _R) -> _R:
        # str(Address) of a public address ends in "/P"; callers key by the bare address.
        return dataclasses.replace(report, rssi=self.rssi_for(str(report.address).split("/")[0]))


class BumbleScanner(BaseBleakScanner):
    """bleak backend: pass as `BleakScanner(..., backend=BumbleScanner, bumble_link=... | bumble_transport=...)`.

    With `bumble_link` a virtual controller joins that in-process link; with `bumble_transport`
    (e.g. "usb:0", "serial:/dev/ttyUSB0", "tcp-client:127.0.0.1:9000") bumble's own host stack
    drives a real HCI controller, bypassing BlueZ.
    """

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        *,
        bumble_link: LocalLink | None = None,
        bumble_transport: str | None = None,
        bumble_rssi_for: Callable[[str], int] | None = None,
        bumble_address: str = _SCANNER_ADDRESS,
        **_platform_args: Any,  # bleak passes bluez= and cb= to every backend
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        if (bumble_link is None) == (bumble_transport is None):
            raise BleakError("BumbleScanner needs exactly one of bumble_link or bumble_transport")
        self._is_active = scanning_mode == "active"
        self._link = bumble_link
        self._transport_spec = bumble_transport
        self._rssi_for = bumble_rssi_for
        self._address = bumble_address
        self._device: Device | None = None
        self._transport: Transport | None = None
        self._controller: Controller | None = None

    async def start(self) -> None:
        self.seen_devices = {}
        try:
            device = await self._open_device()
            device.on(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
            await device.power_on()
            await device.start_scanning(active=self._is_active, filter_duplicates=False)
        except BleakError:
            raise
        except Exception as exc:  # bumble raises OSError, HCI errors, USB errors, timeouts...
            await self._close()
            raise BleakError(f"bumble scanner failed to start: {exc}") from exc
        self._device = device

    async def _open_device(self) -> Device:
        address = hci.Address(self._address)
        if self._link is not None:
            if self._rssi_for is not None:
                controller: Controller = RadioController(
                    "kiosk", link=self._link, public_address=self._address, rssi_for=self._rssi_for
                )
            else:
                controller = Controller("kiosk", link=self._link, public_address=self._address)
            self._controller = controller
            return Device(address=address, host=Host(controller, AsyncPipeSink(controller)))
        assert self._transport_spec is not None
        self._transport = await open_transport(self._transport_spec)
        return Device.with_hci("kiosk", address, self._transport.source, self._transport.sink)

    async def stop(self) -> None:
        if self._device is not None:
            try:
                await self._device.stop_scanning()
            except Exception as exc:  # a dead dongle cannot stop; closing is what matters
                log.debug("bumble stop_scanning failed: %s", exc)
        await self._close()

    async def _close(self) -> None:
        if self._device is not None:
            self._device.remove_listener(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
            self._device = None
        if self._controller is not None and self._link is not None:
            self._link.remove_controller(self._controller)
            self._controller = None
        if self._transport is not None:
            await self._transport.close()
            self._transport = None

    def _on_advertisement(self, advertisement: Advertisement) -> None:
        adv = advertisement_data_from_ad(bytes(advertisement.data), advertisement.rssi, (advertisement,))
        if not self.is_allowed_uuid(adv.service_uuids):
            return
        address = str(advertisement.address).upper()
        device = self.create_or_update_device(address, address, adv.local_name, advertisement, adv)
        self.call_detection_callbacks(device, adv)
