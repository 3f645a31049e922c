"""Virtual phones on a bumble link: what the city app advertises (docs/kiosk-protocols.md, section 3)."""

from __future__ import annotations

from bumble.controller import Controller
from bumble.device import Device
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink


def phone_ad(payload: bytes) -> bytes:
    """Advertising data: flags, the 16-bit service UUID list, and the token as service data."""
    return bytes([2, 1, 6, 3, 3, 0xF7, 0xFF, 3 + len(payload), 0x16, 0xF7, 0xFF]) + payload


async def virtual_phone(link: LocalLink, address: str, ad: bytes) -> Device:
    """A phone on `link` advertising `ad` ten times a second."""
    controller = Controller(f"phone-{address}", link=link, public_address=address)
    device = Device(address=Address(address), host=Host(controller, AsyncPipeSink(controller)))
    await device.power_on()
    await device.start_advertising(advertising_data=ad, advertising_interval_min=100, advertising_interval_max=100)
    return device
