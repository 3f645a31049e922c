"""Tests for the rotating kiosk code, the personal scanner code and the BLE token codecs."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from venue_kiosk import codes

NOW = datetime(2025, 3, 2, 9, 30, 15, tzinfo=UTC)
SECRET = b"secret-secret-secret-secret"
PERSON_KEY = bytes(range(32))


def test_kiosk_code_is_stable_within_a_step_and_changes_with_the_next() -> None:
    first = codes.kiosk_code(SECRET, 7, NOW)
    assert codes.kiosk_code(SECRET, 7, NOW + timedelta(seconds=4)) == first
    assert codes.kiosk_code(SECRET, 7, NOW + timedelta(seconds=10)) != first


def test_kiosk_code_carries_the_kiosk_id_and_verifies_within_the_window() -> None:
    code = codes.kiosk_code(SECRET, 7, NOW)
    assert codes.parse_kiosk_code(code).kiosk_id == 7
    assert codes.verify_kiosk_code(code, SECRET, 7, NOW + timedelta(seconds=10))
    assert not codes.verify_kiosk_code(code, SECRET, 7, NOW + timedelta(seconds=25))  # a photo taken earlier
    assert not codes.verify_kiosk_code(code, b"other secret", 7, NOW)
    assert not codes.verify_kiosk_code(code, SECRET, 8, NOW)


def test_kiosk_code_with_a_flipped_character_is_rejected() -> None:
    code = codes.kiosk_code(SECRET, 7, NOW)
    tampered = code[:-3] + ("A" if code[-3] != "A" else "B") + code[-2:]
    assert not codes.verify_kiosk_code(tampered, SECRET, 7, NOW)
    assert not codes.verify_kiosk_code("not base64!", SECRET, 7, NOW)


def test_kiosk_code_test_vector() -> None:
    # Pinned so the server and any other implementation agree byte for byte (docs/kiosk-protocols.md).
    assert codes.kiosk_code(SECRET, 7, NOW) == "AQAAAAcKYGodKrbSP_mywmQKGg"
    # The same value from the written specification, without the codec.
    head = bytes([1]) + (7).to_bytes(4, "big") + (int(NOW.timestamp()) // 10).to_bytes(4, "big")
    mac = hmac.new(SECRET, b"venue-kiosk/kiosk-code/v1" + head, hashlib.sha256).digest()[:10]
    assert base64.urlsafe_b64encode(head + mac).rstrip(b"=").decode() == codes.kiosk_code(SECRET, 7, NOW)


def test_personal_code_round_trips_and_verifies_on_the_server() -> None:
    code = codes.personal_code(PERSON_KEY, 123456, NOW)
    assert len(code) == codes.PERSONAL_CODE_LENGTH and code.startswith("P1")
    assert set(code) <= set(codes.PERSONAL_ALPHABET)
    parsed = codes.parse_personal_code(code)
    assert parsed.person_ref == 123456
    verified = codes.verify_personal_code(parsed, {123456: PERSON_KEY}.get, NOW + timedelta(seconds=30))
    assert verified == codes.VerifiedCode(123456, codes.time_step(NOW, 30))


def test_personal_code_test_vector() -> None:
    assert codes.personal_code(PERSON_KEY, 123456, NOW) == "P1000NPUCU5AFLVH5HKE"


def test_personal_code_outside_the_window_or_with_wrong_key_does_not_verify() -> None:
    parsed = codes.parse_personal_code(codes.personal_code(PERSON_KEY, 42, NOW))
    assert codes.verify_personal_code(parsed, {42: PERSON_KEY}.get, NOW + timedelta(minutes=2)) is None
    assert codes.verify_personal_code(parsed, {42: b"x" * 32}.get, NOW) is None
    assert codes.verify_personal_code(parsed, {}.get, NOW) is None


def test_caps_lock_and_russian_layout_output_is_normalised_back_to_the_code() -> None:
    code = codes.personal_code(PERSON_KEY, 42, NOW)
    russian = code.translate(str.maketrans("QWERTYUIOPASDFGHJKLZXCVBNM", "ЙЦУКЕНГШЩЗФЫВАПРОЛДЯЧСМИТЬ"))
    assert codes.parse_personal_code(code.lower()).text == code
    assert codes.parse_personal_code(russian.lower()).text == code


def test_azerty_digit_row_symbols_are_normalised_back_to_digits() -> None:
    code = codes.personal_code(PERSON_KEY, 42, NOW)
    azerty = code.translate(str.maketrans("1234567890", "&é\"'(-è_çà"))
    assert codes.parse_personal_code(azerty).text == code


@pytest.mark.parametrize("position", range(2, 20))
def test_every_single_character_substitution_is_caught_by_the_check_character(position: int) -> None:
    code = codes.personal_code(PERSON_KEY, 42, NOW)
    for replacement in codes.PERSONAL_ALPHABET:
        if replacement == code[position]:
            continue
        mangled = code[:position] + replacement + code[position + 1 :]
        with pytest.raises(codes.PersonalCodeError):
            codes.parse_personal_code(mangled)


def test_adjacent_transpositions_are_caught_by_the_check_character() -> None:
    code = codes.personal_code(PERSON_KEY, 987654, NOW)
    for i in range(2, len(code) - 1):
        if code[i] == code[i + 1]:
            continue
        swapped = code[:i] + code[i + 1] + code[i] + code[i + 2 :]
        with pytest.raises(codes.PersonalCodeChecksumError):
            codes.parse_personal_code(swapped)


def test_dropped_character_layout_swap_and_unknown_version_are_rejected() -> None:
    code = codes.personal_code(PERSON_KEY, 42, NOW)
    with pytest.raises(codes.PersonalCodeError, match="characters"):
        codes.parse_personal_code(code[:5] + code[6:])
    # QWERTZ types Y for Z: Y is outside the alphabet, so the swap cannot produce another valid code.
    with_z = next(c for c in (codes.personal_code(PERSON_KEY, r, NOW) for r in range(500)) if "Z" in c[2:])
    with pytest.raises(codes.PersonalCodeError, match="outside the code alphabet"):
        codes.parse_personal_code(with_z.replace("Z", "Y"))
    with pytest.raises(codes.PersonalCodeError, match="version"):
        codes.parse_personal_code("P2" + code[2:])


def test_crc16_matches_the_ccitt_false_check_value() -> None:
    assert codes.crc16_ccitt(b"123456789") == 0x29B1


def test_ble_payload_layout_and_test_vector() -> None:
    payload = codes.ble_token_payload(PERSON_KEY, 42, NOW)
    assert len(payload) == codes.BLE_PAYLOAD_LENGTH == 19
    assert payload.hex() == "010000002a037578b464f314444f1859032b1c"
    head = bytes([1]) + (42).to_bytes(4, "big") + (int(NOW.timestamp()) // 30).to_bytes(4, "big")
    mac = hmac.new(PERSON_KEY, b"venue-kiosk/ble-token/v1" + head, hashlib.sha256).digest()[:8]
    assert payload[:17] == head + mac
    token = codes.parse_ble_payload(payload)
    assert (token.key_id, token.step) == (42, codes.time_step(NOW, 30))
    assert codes.parse_ble_token_text(token.text) == token


def test_ble_token_verifies_only_with_the_right_key_and_while_fresh() -> None:
    token = codes.parse_ble_payload(codes.ble_token_payload(PERSON_KEY, 42, NOW))
    keys = {42: PERSON_KEY}.get
    assert codes.verify_ble_token(token, keys, NOW + timedelta(seconds=30))
    assert not codes.verify_ble_token(token, keys, NOW + timedelta(minutes=5))  # a replay
    assert not codes.verify_ble_token(token, {42: b"k" * 32}.get, NOW)


def test_ble_payload_with_a_flipped_bit_fails_the_crc() -> None:
    payload = bytearray(codes.ble_token_payload(PERSON_KEY, 42, NOW))
    payload[7] ^= 0x01
    with pytest.raises(codes.BleTokenError, match="CRC"):
        codes.parse_ble_payload(bytes(payload))


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        codes.kiosk_code(SECRET, 7, datetime(2025, 3, 2, 9, 30))


@pytest.mark.parametrize("window", [0, 1, 2])
def test_the_full_step_of_a_personal_code_is_the_one_in_the_window_with_its_low_bits(window: int) -> None:
    # Around the 12-bit wrap (step 4096k) and away from it: a step is found iff some step within the
    # window has these low bits, as enumerating the window says, and it is that step.
    step_s = codes.PERSONAL_STEP_S
    ordinary = datetime(2026, 12, 3, 19, 0, tzinfo=UTC)
    wrap = datetime.fromtimestamp(int(ordinary.timestamp()) // (4096 * step_s) * 4096 * step_s, UTC)
    assert codes.time_step(wrap, step_s) % 4096 == 0
    for moment in (wrap, ordinary):
        for offset in range(-3 * step_s, 3 * step_s, 7):
            at = moment + timedelta(seconds=offset)
            current = codes.time_step(at, step_s)
            expected = {(current + d) % 4096: current + d for d in range(-window, window + 1)}
            for step_low in (*range(8), *range(4088, 4096), *((current + d) % 4096 for d in range(-4, 5))):
                parsed = codes.ParsedCode(person_ref=1, step_low=step_low, mac=b"", text="")
                assert codes.personal_code_step(parsed, at, window) == expected.get(step_low)
