"""Pure codecs for kiosk rotating codes, visitors' personal codes and BLE check-in tokens (stdlib only)."""

from __future__ import annotations

import base64
import binascii
import hmac
import operator
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# The server imports this module to verify what kiosks and phones produce, so it must stay
# free of third-party imports. The byte layouts are specified in docs/kiosk-protocols.md.

KIOSK_CODE_VERSION = 1
PERSONAL_CODE_PREFIX = "P1"
BLE_TOKEN_VERSION = 1
# Unregistered 16-bit UUID used until the project holds a Bluetooth SIG member UUID; a
# 128-bit UUID would not leave room for the token in a 31-byte legacy advertisement.
BLE_SERVICE_UUID16 = 0xFFF7
BLE_SERVICE_UUID = f"0000{BLE_SERVICE_UUID16:04x}-0000-1000-8000-00805f9b34fb"
BLE_STEP_S = 30
PERSONAL_STEP_S = 30

_KIOSK_DOMAIN = b"venue-kiosk/kiosk-code/v1"
_PERSONAL_DOMAIN = b"venue-kiosk/personal-code/v1"
_BLE_DOMAIN = b"venue-kiosk/ble-token/v1"


class CodeError(ValueError):
    """A code or token could not be parsed."""


class KioskCodeError(CodeError):
    """A kiosk QR code is malformed."""


class PersonalCodeError(CodeError):
    """A scanned personal code is malformed."""


class PersonalCodeChecksumError(PersonalCodeError):
    """A scanned personal code has the right shape but its check character does not match."""


class BleTokenError(CodeError):
    """A BLE service data payload is malformed."""


def time_step(now: datetime, step_s: int) -> int:
    """Number of whole `step_s` periods since the Unix epoch; `now` must be timezone-aware."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return int(now.timestamp()) // step_s


def _mac(key: bytes, domain: bytes, message: bytes) -> bytes:
    # A domain string per code type so a MAC from one format can never verify as another.
    # The digest by name: OpenSSL's one-shot HMAC, 2.4 us here against 3.5 us with a constructor
    # (the server checks one MAC per item of every kiosk batch).
    return hmac.digest(key, domain + message, "sha256")


# --- 1. Rotating on-screen kiosk code -------------------------------------------------------

_KIOSK_LAYOUT = struct.Struct(">BII")  # version, kiosk_id, time step
_KIOSK_MAC_LEN = 10


@dataclass(frozen=True, slots=True)
class ParsedKioskCode:
    kiosk_id: int
    step: int
    mac: bytes


def kiosk_code(rotation_secret: bytes, kiosk_id: int, now: datetime, step_s: int = 10) -> str:
    """The code shown in the kiosk's QR (`{checkin_base_url}/k/{code}`) during the step holding `now`."""
    step = time_step(now, step_s)
    head = _KIOSK_LAYOUT.pack(KIOSK_CODE_VERSION, kiosk_id, step)
    mac = _mac(rotation_secret, _KIOSK_DOMAIN, head)[:_KIOSK_MAC_LEN]
    return base64.urlsafe_b64encode(head + mac).rstrip(b"=").decode("ascii")


def parse_kiosk_code(code: str) -> ParsedKioskCode:
    """Split a kiosk code into its fields so the server can find the kiosk's secret."""
    try:
        raw = base64.urlsafe_b64decode(code + "=" * (-len(code) % 4))
    except (binascii.Error, ValueError) as exc:
        raise KioskCodeError("kiosk code is not base64url") from exc
    if len(raw) != _KIOSK_LAYOUT.size + _KIOSK_MAC_LEN:
        raise KioskCodeError("kiosk code has the wrong length")
    version, kiosk_id, step = _KIOSK_LAYOUT.unpack_from(raw)
    if version != KIOSK_CODE_VERSION:
        raise KioskCodeError(f"unsupported kiosk code version {version}")
    return ParsedKioskCode(kiosk_id, step, raw[_KIOSK_LAYOUT.size :])


def verify_kiosk_code(
    code: str,
    rotation_secret: bytes,
    kiosk_id: int,
    now: datetime,
    window_steps: int = 1,
    step_s: int = 10,
) -> bool:
    """True when `code` was made by this kiosk within `window_steps` steps of `now`."""
    try:
        parsed = parse_kiosk_code(code)
    except KioskCodeError:
        return False
    if parsed.kiosk_id != kiosk_id:
        return False
    if abs(parsed.step - time_step(now, step_s)) > window_steps:
        return False
    head = _KIOSK_LAYOUT.pack(KIOSK_CODE_VERSION, kiosk_id, parsed.step)
    expected = _mac(rotation_secret, _KIOSK_DOMAIN, head)[:_KIOSK_MAC_LEN]
    return hmac.compare_digest(expected, parsed.mac)


# --- 2. Visitor's personal code read by a keyboard-wedge or serial scanner --------------------

# 31 symbols (a prime, so the weighted check below catches every single substitution and every
# transposition). O and I are left out as look-alikes of 0 and 1; one letter of each pair that a
# keyboard layout swaps is left out (QWERTZ Y/Z, AZERTY A/Q and Z/W), so a swap yields a symbol
# outside the alphabet instead of another valid code. All symbols are in QR alphanumeric mode.
PERSONAL_ALPHABET = "0123456789ABCDEFGHJKLMNPRSTUVXZ"
_BASE = len(PERSONAL_ALPHABET)
_VALUE = {ch: i for i, ch in enumerate(PERSONAL_ALPHABET)}
_PAYLOAD_CHARS = 17  # 31**17 > 2**84 = 32-bit ref + 12-bit step + 40-bit MAC
PERSONAL_CODE_LENGTH = len(PERSONAL_CODE_PREFIX) + _PAYLOAD_CHARS + 1
_STEP_BITS = 12
_MAC_BITS = 40

# A wedge scanner types key positions; the host's layout decides the characters. Russian
# ЙЦУКЕН turns letter keys into Cyrillic and French AZERTY turns the unshifted digit row into
# symbols. Both map back unambiguously because neither output is ever a valid symbol.
_LAYOUT_FIXES = str.maketrans(
    {
        **dict(zip("ЙЦУКЕНГШЩЗФЫВАПРОЛДЯЧСМИТЬ", "QWERTYUIOPASDFGHJKLZXCVBNM", strict=True)),
        **dict(zip("&É\"'(-È_ÇÀ", "1234567890", strict=True)),
    }
)


@dataclass(frozen=True, slots=True)
class ParsedCode:
    """A personal code that passed the format and checksum tests; not yet authenticated."""

    person_ref: int
    step_low: int
    mac: bytes
    text: str


@dataclass(frozen=True, slots=True)
class VerifiedCode:
    person_ref: int
    step: int


def _check_value(values: list[int]) -> int:
    # Weights 1..n with n < 31 are distinct and non-zero mod 31; the check symbol sits at weight
    # n+1 and makes the weighted sum of the whole code 0 mod 31.
    total = sum(map(operator.mul, range(1, len(values) + 1), values))
    weight = len(values) + 1
    return (-total * pow(weight, -1, _BASE)) % _BASE


def _personal_mac(person_key: bytes, person_ref: int, step: int) -> bytes:
    return _mac(person_key, _PERSONAL_DOMAIN, struct.pack(">IQ", person_ref, step))[: _MAC_BITS // 8]


def personal_code(person_key: bytes, person_ref: int, now: datetime, step_s: int = PERSONAL_STEP_S) -> str:
    """The visitor's rotating code for the step holding `now` (shown as a QR on their phone)."""
    step = time_step(now, step_s)
    mac = _personal_mac(person_key, person_ref, step)
    number = (person_ref << (_STEP_BITS + _MAC_BITS)) | ((step % (1 << _STEP_BITS)) << _MAC_BITS)
    number |= int.from_bytes(mac, "big")
    digits = []
    for _ in range(_PAYLOAD_CHARS):
        number, rem = divmod(number, _BASE)
        digits.append(PERSONAL_ALPHABET[rem])
    body = PERSONAL_CODE_PREFIX + "".join(reversed(digits))
    return body + PERSONAL_ALPHABET[_check_value([_VALUE[c] for c in body])]


def normalise_scanned(raw: str) -> str:
    """Undo what keyboard layouts and caps lock do to a wedge scanner's output."""
    text = raw.strip().upper()
    if text.isascii() and text.isalnum():
        return text  # plain letters and digits: nothing for the layout fixes to map
    return text.translate(_LAYOUT_FIXES)


# The payload symbols as the digits int() reads in base 31, so the C parser does the arithmetic.
_TO_BASE31 = bytes.maketrans(PERSONAL_ALPHABET.encode(), b"0123456789abcdefghijklmnopqrstu")
# Each ASCII byte's symbol value; 255 for a byte outside the alphabet. One C call maps a whole code.
_SYMBOL_VALUES = bytes(_VALUE.get(chr(b), 255) for b in range(256))
_WEIGHTS = range(1, PERSONAL_CODE_LENGTH + 1)
_PREFIX_BYTES = PERSONAL_CODE_PREFIX.encode()


def parse_personal_code(raw: str) -> ParsedCode:
    """Parse one scanned line; raises PersonalCodeError (or its checksum subclass) on bad input."""
    text = normalise_scanned(raw)
    if len(text) != PERSONAL_CODE_LENGTH:
        raise PersonalCodeError(f"expected {PERSONAL_CODE_LENGTH} characters, got {len(text)}")
    if not text.startswith(PERSONAL_CODE_PREFIX):
        raise PersonalCodeError("unknown personal code version")
    data = text.encode("ascii", errors="replace")  # bytes.translate works on bytes at C speed
    values = data.translate(_SYMBOL_VALUES)
    if 255 in values:
        bad = sorted(set(text) - set(PERSONAL_ALPHABET))
        raise PersonalCodeError(f"characters outside the code alphabet: {''.join(bad)!r}")
    # The check symbol makes the weighted sum of the whole code 0 mod 31 (see _check_value).
    if sum(map(operator.mul, _WEIGHTS, values)) % _BASE:
        raise PersonalCodeChecksumError("check character does not match")
    number = int(data[len(_PREFIX_BYTES) : -1].translate(_TO_BASE31), _BASE)
    if number >> (32 + _STEP_BITS + _MAC_BITS):
        raise PersonalCodeError("payload out of range")
    mac = (number & ((1 << _MAC_BITS) - 1)).to_bytes(_MAC_BITS // 8, "big")
    step_low = (number >> _MAC_BITS) & ((1 << _STEP_BITS) - 1)
    return ParsedCode(number >> (_STEP_BITS + _MAC_BITS), step_low, mac, text)


def personal_code_step(
    parsed: ParsedCode, now: datetime, window_steps: int = 1, step_s: int = PERSONAL_STEP_S
) -> int | None:
    """The full time step within `window_steps` of `now` whose low 12 bits the code carries, or None.

    Only the low bits travel in the code; a window far below 4096 steps leaves at most one candidate.
    """
    earliest = time_step(now, step_s) - window_steps
    step = earliest + (parsed.step_low - earliest) % (1 << _STEP_BITS)
    return step if step <= earliest + 2 * window_steps else None


def personal_mac_matches(parsed: ParsedCode, key: bytes, step: int) -> bool:
    """Whether the code's MAC is the one `key` makes for this full step (constant-time comparison)."""
    return hmac.compare_digest(_personal_mac(key, parsed.person_ref, step), parsed.mac)


def verify_personal_code(
    parsed: ParsedCode,
    key_lookup: Callable[[int], bytes | None],
    now: datetime,
    window_steps: int = 1,
    step_s: int = PERSONAL_STEP_S,
) -> VerifiedCode | None:
    """Server side: the full time step if the MAC matches a step within the window, else None."""
    key = key_lookup(parsed.person_ref)
    if key is None:
        return None
    step = personal_code_step(parsed, now, window_steps, step_s)
    if step is None or not personal_mac_matches(parsed, key, step):
        return None
    return VerifiedCode(parsed.person_ref, step)


# --- 3. BLE service data ----------------------------------------------------------------------

_BLE_HEAD = struct.Struct(">BII")  # version, key_id, time step
_BLE_MAC_LEN = 8
BLE_PAYLOAD_LENGTH = _BLE_HEAD.size + _BLE_MAC_LEN + 2


@dataclass(frozen=True, slots=True)
class BleToken:
    key_id: int
    step: int
    mac: bytes
    payload: bytes

    @property
    def text(self) -> str:
        """The form sent to the server in a check-in item's `token` field."""
        return base64.urlsafe_b64encode(self.payload).rstrip(b"=").decode("ascii")


def crc16_ccitt(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection); check value of b'123456789' is 0x29B1."""
    # binascii's CRC-CCITT (XMODEM) with the initial value 0xFFFF is exactly CCITT-FALSE, at C speed:
    # the server checks every Bluetooth token of every batch.
    return binascii.crc_hqx(data, 0xFFFF)


def _ble_mac(key: bytes, key_id: int, step: int) -> bytes:
    head = _BLE_HEAD.pack(BLE_TOKEN_VERSION, key_id, step)
    return _mac(key, _BLE_DOMAIN, head)[:_BLE_MAC_LEN]


def ble_token_payload(key: bytes, key_id: int, now: datetime, step_s: int = BLE_STEP_S) -> bytes:
    """The 19-byte service data a phone advertises under BLE_SERVICE_UUID during the step of `now`."""
    step = time_step(now, step_s)
    body = _BLE_HEAD.pack(BLE_TOKEN_VERSION, key_id, step) + _ble_mac(key, key_id, step)
    return body + struct.pack(">H", crc16_ccitt(body))


def parse_ble_payload(payload: bytes) -> BleToken:
    """Parse raw service data bytes; raises BleTokenError on a bad length, version or CRC."""
    if len(payload) != BLE_PAYLOAD_LENGTH:
        raise BleTokenError(f"expected {BLE_PAYLOAD_LENGTH} bytes, got {len(payload)}")
    if payload[0] != BLE_TOKEN_VERSION:
        raise BleTokenError(f"unsupported BLE token version {payload[0]}")
    (crc,) = struct.unpack_from(">H", payload, len(payload) - 2)
    if crc != crc16_ccitt(payload[:-2]):
        raise BleTokenError("CRC mismatch")
    _, key_id, step = _BLE_HEAD.unpack_from(payload)
    return BleToken(key_id, step, payload[_BLE_HEAD.size : -2], bytes(payload))


def parse_ble_token_text(text: str) -> BleToken:
    """Server side: decode the `token` field of a `ble` check-in item."""
    try:
        payload = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise BleTokenError("BLE token is not base64url") from exc
    return parse_ble_payload(payload)


def parse_ble_service_data(adv: Any) -> BleToken | None:
    """Token from a bleak AdvertisementData (duck-typed: anything with `service_data`), else None.

    None means "not ours or damaged"; the kiosk ignores such advertisements without a message
    because every phone nearby advertises something.
    """
    service_data: Mapping[str, bytes] = getattr(adv, "service_data", None) or {}
    payload = service_data.get(BLE_SERVICE_UUID)
    if payload is None:
        return None
    try:
        return parse_ble_payload(payload)
    except BleTokenError:
        return None


def is_ble_step_fresh(token: BleToken, now: datetime, window_steps: int = 1, step_s: int = BLE_STEP_S) -> bool:
    """The kiosk's local replay filter: the token's step is within the window of `now`."""
    return abs(token.step - time_step(now, step_s)) <= window_steps


def ble_mac_matches(token: BleToken, key: bytes) -> bool:
    """Whether the token's MAC is the one `key` makes for its key id and step (constant-time comparison)."""
    return hmac.compare_digest(_ble_mac(key, token.key_id, token.step), token.mac)


def verify_ble_token(
    token: BleToken,
    key_lookup: Callable[[int], bytes | None],
    now: datetime,
    window_steps: int = 1,
    step_s: int = BLE_STEP_S,
) -> bool:
    """Server side: the MAC matches the key for `key_id` and the step is fresh (replays fail)."""
    if not is_ble_step_fresh(token, now, window_steps, step_s):
        return False
    key = key_lookup(token.key_id)
    if key is None:
        return False
    return ble_mac_matches(token, key)
