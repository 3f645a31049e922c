"""Encryption at rest and keyed lookup hashes."""

from __future__ import annotations

import base64

import pytest

from app.services.personal_data import Keyring, PersonalDataError, mask_phone


def _key(byte: bytes) -> str:
    return base64.urlsafe_b64encode(byte * 32).decode()


def test_round_trip_and_ciphertext_does_not_contain_the_value() -> None:
    ring = Keyring.from_config(f"a:{_key(b'a')}", _key(b"h"))
    blob = ring.encrypt("+79161234567", context="phone")
    assert b"79161234567" not in blob
    assert ring.decrypt(blob, context="phone") == "+79161234567"
    assert ring.encrypt("+79161234567", context="phone") != blob  # fresh nonce each time


def test_rotated_keyring_still_reads_rows_written_with_the_old_key() -> None:
    old = Keyring.from_config(f"a:{_key(b'a')}", _key(b"h"))
    blob = old.encrypt("+79161234567", context="phone")
    rotated = Keyring.from_config(f"b:{_key(b'b')},a:{_key(b'a')}", _key(b"h"))
    assert rotated.decrypt(blob, context="phone") == "+79161234567"
    assert rotated.key_id_of(rotated.encrypt("x", context="phone")) == "b"


def test_tampered_ciphertext_or_wrong_column_is_refused() -> None:
    ring = Keyring.from_config(f"a:{_key(b'a')}", _key(b"h"))
    blob = bytearray(ring.encrypt("+79161234567", context="phone"))
    blob[-1] ^= 1
    with pytest.raises(PersonalDataError):
        ring.decrypt(bytes(blob), context="phone")
    with pytest.raises(PersonalDataError):
        ring.decrypt(ring.encrypt("a@b.c", context="email"), context="phone")


def test_unknown_key_id_is_refused_clearly() -> None:
    blob = Keyring.from_config(f"a:{_key(b'a')}", _key(b"h")).encrypt("x", context="phone")
    with pytest.raises(PersonalDataError, match="no key with id 'a'"):
        Keyring.from_config(f"b:{_key(b'b')}", _key(b"h")).decrypt(blob, context="phone")


def test_lookup_hash_is_stable_keyed_and_separated_by_context() -> None:
    ring = Keyring.from_config(f"a:{_key(b'a')}", _key(b"h"))
    other = Keyring.from_config(f"a:{_key(b'a')}", _key(b"i"))
    assert ring.lookup_hash("+79161234567", context="phone") == ring.lookup_hash("+79161234567", context="phone")
    assert ring.lookup_hash("+79161234567", context="phone") != other.lookup_hash("+79161234567", context="phone")
    assert ring.lookup_hash("x", context="phone") != ring.lookup_hash("x", context="email")


def test_bad_key_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        Keyring.from_config("nokeyid", _key(b"h"))
    with pytest.raises(ValueError):
        Keyring.from_config("a:c2hvcnQ=", _key(b"h"))


def test_mask_phone_hides_the_middle() -> None:
    assert mask_phone("+79161234567") == "+7916***4567"


@pytest.mark.parametrize("length", range(2, 17))
def test_mask_phone_hides_at_least_three_characters_of_any_number(length: int) -> None:
    # E.164 allows up to 15 digits; some valid mobiles have only 5 to 7 after the country code.
    phone = "+" + "123456789012345"[: length - 1]
    masked = mask_phone(phone)
    assert len(masked) == len(phone)
    assert masked.count("*") >= min(3, length)
    assert all(m in ("*", p) for m, p in zip(masked, phone, strict=True))
