"""Visitors' pages: the poster check-in page, sign-in by SMS code or mos.ru, my visits.

Identity on the web is the remembered-device cookie only (set after an SMS code or a mos.ru sign-in),
so signing a device out works the same for both. The Flask session holds just the sign-in in
progress and a kiosk pass; no phone number ever goes into a cookie.

- identity: the blueprint, its language hooks, and the person behind the device cookie;
- checkin: the check-in page, from a poster or a kiosk's rotating code;
- signin: sign-in by SMS code or with mos.ru;
- visits: a signed-in visitor's pages: a visit, and my visits with devices, notices, erasure.
"""

# Importing a module registers its routes (and identity's hooks) on the blueprint, in this order.
from app.views.visitors import checkin, identity, signin, visits  # noqa: F401
from app.views.visitors.checkin import KIOSK_PASS, MAX_COMPANION_LINES, KioskCodeStale, Place, place_for
from app.views.visitors.identity import (
    DEVICE_COOKIE,
    LANG_COOKIE,
    _serializer,
    bp,
    current_person,
    device_token_from_cookie,
    set_device_cookie,
)
from app.views.visitors.visits import qr_svg

__all__ = [
    "DEVICE_COOKIE",
    "KIOSK_PASS",
    "LANG_COOKIE",
    "MAX_COMPANION_LINES",
    "KioskCodeStale",
    "Place",
    "_serializer",
    "bp",
    "current_person",
    "device_token_from_cookie",
    "place_for",
    "qr_svg",
    "set_device_cookie",
]
