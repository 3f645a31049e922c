"""Signed poster tokens: issue, reissue, rotate and revoke keys, and refuse anything forged."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.models import PosterSigningKey, PosterVersion
from app.services import posters
from app.services.poster_rendering import build_qr
from app.services.posters import (
    PosterReplaced,
    PosterTokenError,
    PosterTokenInvalid,
    PosterVenueClosed,
    TokenFields,
    decode_token,
    encode_payload,
    issue_poster,
    resolve_poster_token,
)
from tests import factories

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _raw(token: str) -> bytes:
    return base64.b32decode(token + "=" * (-len(token) % 8))


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=")


def test_issued_token_resolves_to_its_venue_entrance_and_version(db: Any, now: datetime) -> None:
    venue = factories.venue(name="Кафе «Пушкинъ»")
    version, token = issue_poster(venue.entrances[0], now)
    ref = resolve_poster_token(token, now)
    assert (ref.venue.id, ref.entrance.id, ref.poster_version.id) == (venue.id, venue.entrances[0].id, version.id)
    assert version.version == 1
    assert token.isupper() and token.isalnum()


def test_reissue_revokes_the_previous_version(db: Any, now: datetime) -> None:
    entrance = factories.venue().entrances[0]
    first, old_token = issue_poster(entrance, now)
    second, new_token = issue_poster(entrance, now + timedelta(minutes=1))
    assert second.version == 2 and first.revoked_at == now + timedelta(minutes=1)
    with pytest.raises(PosterReplaced) as caught:
        resolve_poster_token(old_token, now + timedelta(minutes=2))
    assert caught.value.status == 410 and "replaced" in caught.value.message
    assert resolve_poster_token(new_token, now + timedelta(minutes=2)).poster_version.id == second.id


def test_current_token_is_stable_and_issues_on_first_use(db: Any, now: datetime) -> None:
    entrance = factories.venue().entrances[0]
    token = posters.current_token(entrance, now)
    assert posters.current_token(entrance, now) == token
    assert db.session.query(PosterVersion).filter_by(entrance_id=entrance.id).count() == 1
    assert posters.poster_url(token) == f"http://checkin.test/p/{token}"


def test_first_use_creates_an_encrypted_signing_key(db: Any, now: datetime) -> None:
    _, token = issue_poster(factories.venue().entrances[0], now)
    key = db.session.get(PosterSigningKey, decode_token(token)[0].key_id)
    assert len(key.public_key) == 32
    assert key.private_key_enc[0] == 1  # the personal-data ciphertext format, not raw key bytes
    assert len(key.private_key_enc) > 32 + 12


def test_rotated_key_keeps_old_posters_valid_and_signs_new_ones_with_the_new_key(db: Any, now: datetime) -> None:
    venue = factories.venue(halls=("Зал 1",))
    old_version, old_token = issue_poster(venue.entrances[0], now)
    new_key = posters.rotate_signing_key(now)
    new_version, new_token = issue_poster(venue.entrances[1], now)
    assert new_version.signing_key_id == new_key.id != old_version.signing_key_id
    assert resolve_poster_token(old_token, now).entrance.id == venue.entrances[0].id
    assert resolve_poster_token(new_token, now).entrance.id == venue.entrances[1].id
    # The token of a poster signed by a retired key is still reproduced, not reissued.
    assert posters.current_token(venue.entrances[0], now) == old_token


def test_revoked_key_invalidates_its_posters_and_current_token_reissues(db: Any, now: datetime) -> None:
    entrance = factories.venue().entrances[0]
    version, token = issue_poster(entrance, now)
    posters.revoke_signing_key(version.signing_key_id, now)
    with pytest.raises(PosterTokenInvalid):
        resolve_poster_token(token, now)
    fresh = posters.current_token(entrance, now)
    assert fresh != token
    assert resolve_poster_token(fresh, now).poster_version.version == 2


def test_archived_venue_and_entrance_are_gone(db: Any, now: datetime) -> None:
    venue = factories.venue(halls=("Зал",))
    _, token = issue_poster(venue.entrances[0], now)
    _, hall_token = issue_poster(venue.entrances[1], now)
    venue.entrances[1].archived_at = now
    with pytest.raises(PosterVenueClosed) as caught:
        resolve_poster_token(hall_token, now)
    assert caught.value.status == 410
    venue.archived_at = now
    with pytest.raises(PosterVenueClosed):
        resolve_poster_token(token, now)


def test_forged_signature_is_refused(db: Any, now: datetime) -> None:
    _, token = issue_poster(factories.venue().entrances[0], now)
    raw = bytearray(_raw(token))
    raw[-1] ^= 0x01
    with pytest.raises(PosterTokenInvalid) as caught:
        resolve_poster_token(_b32(bytes(raw)), now)
    assert caught.value.status == 400
    assert caught.value.message == "This QR code is not a valid poster of this service."


def test_other_entrance_with_the_same_signature_is_refused(db: Any, now: datetime) -> None:
    venue = factories.venue(halls=("Зал",))
    _, token = issue_poster(venue.entrances[0], now)
    issue_poster(venue.entrances[1], now)
    fields, _, signature = decode_token(token)
    moved = encode_payload(TokenFields(fields.key_id, venue.entrances[1].id, fields.version))
    with pytest.raises(PosterTokenInvalid):
        resolve_poster_token(_b32(moved + signature), now)


def test_token_re_signed_with_another_key_is_refused(db: Any, now: datetime) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    _, token = issue_poster(factories.venue().entrances[0], now)
    _, payload, _ = decode_token(token)
    foreign = Ed25519PrivateKey.generate().sign(posters.SIGNING_PREFIX + payload)
    with pytest.raises(PosterTokenInvalid):
        resolve_poster_token(_b32(payload + foreign), now)


@pytest.mark.parametrize("cut", [1, 5, 40, 100])
def test_truncated_token_is_refused(db: Any, now: datetime, cut: int) -> None:
    _, token = issue_poster(factories.venue().entrances[0], now)
    with pytest.raises(PosterTokenInvalid):
        resolve_poster_token(token[:-cut], now)


def test_lower_case_token_is_accepted_but_padding_and_junk_are_not(db: Any, now: datetime) -> None:
    _, token = issue_poster(factories.venue().entrances[0], now)
    assert resolve_poster_token(token.lower(), now).poster_version.version == 1
    for bad in (token + "=", token + "A", " " + token, token + "\n", "", "0" * len(token)):
        with pytest.raises(PosterTokenInvalid):
            resolve_poster_token(bad, now)


def test_poster_url_fits_a_small_qr_code(app: Flask, db: Any, now: datetime) -> None:
    """Measured at error correction M with a realistic production address.

    Upper-case base32 rides in QR alphanumeric mode: version 6 (41x41 modules) while the ids are
    small, and at most version 7 with ids in the millions, one version smaller than base64url would
    need. The issued token's own ids come from the database's sequences, so it is held to the bound.
    """
    _, token = issue_poster(factories.venue().entrances[0], now)
    assert build_qr(f"https://checkin.example.org/p/{token}").version in (6, 7)
    small = _b32(encode_payload(TokenFields(1, 1, 1)) + bytes(range(64)))
    assert len(small) == 109 and build_qr(f"https://checkin.example.org/p/{small}").version == 6
    big = encode_payload(TokenFields(300, 2_000_000, 50)) + bytes(range(64))
    as_base32 = _b32(big)
    as_base64 = base64.urlsafe_b64encode(big).decode().rstrip("=")
    assert len(as_base32) == 114
    assert build_qr(f"https://checkin.example.org/p/{as_base32}").version == 7
    assert build_qr(f"https://checkin.example.org/p/{as_base64}").version == 8


@FUZZ
@given(text=st.text(max_size=300))
def test_fuzzed_strings_only_ever_raise_poster_token_errors(db: Any, now: datetime, text: str) -> None:
    with pytest.raises(PosterTokenError):
        resolve_poster_token(text, now)


@FUZZ
@given(data=st.binary(max_size=120))
def test_fuzzed_bytes_only_ever_raise_poster_token_errors(db: Any, now: datetime, data: bytes) -> None:
    # Well-formed base32 of arbitrary bytes reaches the varint parser, the key lookup and the signature check.
    with pytest.raises(PosterTokenError):
        resolve_poster_token(_b32(bytes([1]) + data), now)


@FUZZ
@given(position=st.integers(min_value=0, max_value=10_000), flip=st.integers(min_value=1, max_value=255))
def test_any_altered_byte_of_a_real_token_is_refused(db: Any, now: datetime, position: int, flip: int) -> None:
    entrance = factories.venue().entrances[0]
    token = posters.current_token(entrance, now)
    raw = bytearray(_raw(token))
    raw[position % len(raw)] ^= flip
    with pytest.raises(PosterTokenError):
        resolve_poster_token(_b32(bytes(raw)), now)
