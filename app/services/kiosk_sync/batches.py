"""Check-in batches from kiosks: parse each item, drop re-sent ones, verify tokens, hand the rest to a recorder."""

from __future__ import annotations

import binascii
import logging
import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import and_, or_, select

from app.errors import ValidationError
from app.extensions import db
from app.models import MAX_ROW_ID, Checkin, CheckinSource, PersonalCodeKey
from app.services import people
from app.services.kiosk_sync.enrolment import KioskContext, parse_time
from app.services.kiosk_sync.recording import VerifiedItem, _among, record_visits_in_bulk
from app.services.personal_codes import KEY_CONTEXT as PERSONAL_KEY_CONTEXT
from app.services.personal_data import PersonalDataError, keyring
from venue_kiosk import codes

log = logging.getLogger(__name__)

MAX_BATCH = 500
MAX_CLIENT_ID = 64
MAX_TOKEN = 64
# Freshness: a scanned code or Bluetooth token must belong to a time step within this many steps of
# the moment the kiosk observed it (the codes module's default).
SCAN_WINDOW_STEPS = 1
# An item the kiosk re-timed by its measured clock skew carries `clock_skew_s`; the correction assumes a
# constant offset, so such items get one more step of tolerance (docs/kiosk-protocols.md, section 4).
SKEWED_EXTRA_STEPS = 1
# Observation times: a little ahead of our clock is jitter, far ahead is a broken tablet clock.
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_REPORTED_SKEW_S = 7 * 24 * 3600.0
RETENTION_DAYS_DEFAULT = 21
# Batches refresh the kiosk's "last seen" at most this often (heartbeats always do): operators read it
# in minutes, and a kiosk sending batch after batch would otherwise update its row for every one.
SEEN_GRANULARITY = timedelta(seconds=30)

_SOURCES = {"kiosk_scanner": CheckinSource.KIOSK_SCANNER, "ble": CheckinSource.BLE}


# --- check-in batches ------------------------------------------------------------------------------


class ItemResult(NamedTuple):
    index: int
    client_id: str | None
    status: str  # accepted | duplicate | rejected
    reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "client_id": self.client_id, "status": self.status, "reason": self.reason}


class _Item(NamedTuple):
    index: int
    client_id: str
    method: str
    token: str
    observed_at: datetime
    window_steps: int


Recorder = Callable[[KioskContext, Sequence[VerifiedItem], datetime], dict[int, tuple[str, str | None]]]


def ingest_checkins(
    ctx: KioskContext,
    raw_items: object,
    now: datetime,
    *,
    retention_days: int = RETENTION_DAYS_DEFAULT,
    recorder: Recorder | None = None,
) -> list[ItemResult]:
    """Verify and record one batch from a kiosk; one result per item, in order.

    Each item is accepted (a visit was created or an open one continues), a duplicate (its client id
    was recorded before: a re-sent batch) or rejected with a reason; a bad item never fails the
    batch. Keys, earlier client ids and the people's visits are read with one query each per batch.
    `recorder` writes the verified items (default: `record_visits_in_bulk`).
    """
    if not isinstance(raw_items, list):
        raise ValidationError("items must be a list of check-ins.", field="items")
    if len(raw_items) > MAX_BATCH:
        raise ValidationError(f"A batch holds at most {MAX_BATCH} items; send the rest in another.", field="items")
    results: dict[int, ItemResult] = {}
    items: list[_Item] = []
    seen: set[str] = set()
    earliest = max(now - timedelta(days=retention_days), ctx.kiosk.enrolled_at - FUTURE_TOLERANCE)
    # An archived venue or entrance takes no check-ins from then on; reads from before still count.
    closings = [at for at in (ctx.venue.archived_at, ctx.entrance.archived_at) if at is not None]
    closed_at = min(closings) if closings else None
    for index, raw in enumerate(raw_items):
        item_or_reason = _parse_item(index, raw, now, earliest)
        if closed_at is not None and not isinstance(item_or_reason, str) and item_or_reason.observed_at >= closed_at:
            item_or_reason = "This entrance was closed before this check-in; it no longer takes check-ins."
        if isinstance(item_or_reason, str):
            client_id = _client_id(raw.get("client_id")) if isinstance(raw, dict) else None
            results[index] = ItemResult(index, client_id, "rejected", item_or_reason)
        elif item_or_reason.client_id in seen:
            results[index] = ItemResult(
                index, item_or_reason.client_id, "duplicate", "The same client id came twice in this batch."
            )
        else:
            seen.add(item_or_reason.client_id)
            items.append(item_or_reason)
    if people.seen_is_stale(ctx.kiosk.last_seen_at, now, SEEN_GRANULARITY):
        ctx.kiosk.last_seen_at = now  # a busy kiosk's batches would otherwise each write its row
    items = _drop_known_client_ids(ctx, items, results)
    verified = _verify(items, results)
    if verified:
        outcomes = (recorder or record_visits_in_bulk)(ctx, verified, now)
        for item in verified:
            status, reason = outcomes[item.index]
            results[item.index] = ItemResult(item.index, item.client_id, status, reason)
    return [results[i] for i in range(len(raw_items))]


def _client_id(value: object) -> str | None:
    """The item's client id if it is usable (1 to MAX_CLIENT_ID printable characters), else None."""
    if isinstance(value, str) and 0 < len(value) <= MAX_CLIENT_ID and value.isprintable():
        return value
    return None


def _parse_item(index: int, raw: object, now: datetime, earliest: datetime) -> _Item | str:
    """A well-formed item, or the reason it is not (never an exception: one bad item is one result)."""
    if not isinstance(raw, dict):
        return "Each item must be an object."
    client_id = _client_id(raw.get("client_id"))
    if client_id is None:
        return f"client_id must be a printable text of 1 to {MAX_CLIENT_ID} characters."
    method = raw.get("method")
    if not isinstance(method, str) or method not in _SOURCES:  # a list or object is unhashable
        return "method must be kiosk_scanner or ble."
    token = raw.get("token")
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN:
        return "token is missing or too long."
    try:
        observed_at = parse_time(raw.get("observed_at"), "observed_at")
    except ValidationError as exc:
        return exc.message
    if observed_at > now + FUTURE_TOLERANCE:
        return "observed_at is in the future: check the kiosk's clock."
    if observed_at < earliest:
        return "observed_at is before this kiosk was enrolled or older than the retention period."
    window = SCAN_WINDOW_STEPS
    skew = raw.get("clock_skew_s")
    if skew is not None:
        if not isinstance(skew, int | float) or isinstance(skew, bool) or not math.isfinite(skew):
            return "clock_skew_s must be a number of seconds."
        if abs(skew) > MAX_REPORTED_SKEW_S:
            return "clock_skew_s is implausibly large: set the kiosk's clock."
        window += SKEWED_EXTRA_STEPS
    return _Item(index, client_id, method, token, observed_at, window)


def _drop_known_client_ids(ctx: KioskContext, items: list[_Item], results: dict[int, ItemResult]) -> list[_Item]:
    # One query for the whole batch; the unique constraint on checkins.client_id is the real guard.
    if not items:
        return items
    checkins = Checkin.__table__  # table columns: rows come back as plain tuples, without the ORM's loading
    known = dict(
        db.session.execute(
            select(checkins.c.client_id, checkins.c.kiosk_id).where(
                _among(checkins.c.client_id, [i.client_id for i in items])
            )
        ).all()
    )
    fresh = []
    for item in items:
        if item.client_id not in known:
            fresh.append(item)
        elif known[item.client_id] == ctx.kiosk.id:
            results[item.index] = ItemResult(item.index, item.client_id, "duplicate", "Already recorded.")
        else:
            results[item.index] = ItemResult(
                item.index, item.client_id, "rejected", "This client id was used by another device."
            )
    return fresh


# --- verification ------------------------------------------------------------------------------------

_EXPIRED = "The code had expired when it was read (an old screenshot, recording or replay)."
_NOT_GENUINE = "The code is not genuine or no longer valid."
_DAMAGED = "The token is damaged or is not a check-in code."


class _Key(NamedTuple):
    person_id: int
    key: bytes
    revoked_at: datetime | None

    def is_valid_at(self, at: datetime) -> bool:
        # A key retired after the observation still vouches for it: an offline kiosk may send late.
        return self.revoked_at is None or self.revoked_at > at


def _verify(items: Sequence[_Item], results: dict[int, ItemResult]) -> list[VerifiedItem]:
    """Check every token's MAC and freshness against the moment the kiosk observed it."""
    personal: dict[int, codes.ParsedCode] = {}
    ble: dict[int, codes.BleToken] = {}
    for item in items:
        try:
            if item.method == "kiosk_scanner":
                personal[item.index] = codes.parse_personal_code(item.token)
            else:
                ble[item.index] = codes.parse_ble_token_text(item.token)
        except codes.CodeError:
            results[item.index] = ItemResult(item.index, item.client_id, "rejected", _DAMAGED)
    oldest = min((i.observed_at for i in items), default=None)
    qr_keys, ble_keys = _keys({p.person_ref for p in personal.values()}, {t.key_id for t in ble.values()}, oldest)
    verified = []
    for item in items:
        at = item.observed_at
        code = personal.get(item.index)
        if code is not None:
            step = codes.personal_code_step(code, at, item.window_steps)
            if step is None:
                results[item.index] = ItemResult(item.index, item.client_id, "rejected", _EXPIRED)
                continue
            key = qr_keys.get(code.person_ref)
            genuine = key is not None and key.is_valid_at(at) and codes.personal_mac_matches(code, key.key, step)
        else:
            token = ble.get(item.index)
            if token is None:
                continue  # damaged, already answered
            if not codes.is_ble_step_fresh(token, at, item.window_steps):
                results[item.index] = ItemResult(item.index, item.client_id, "rejected", _EXPIRED)
                continue
            key = ble_keys.get(token.key_id)
            genuine = key is not None and key.is_valid_at(at) and codes.ble_mac_matches(token, key.key)
        if not genuine:
            results[item.index] = ItemResult(item.index, item.client_id, "rejected", _NOT_GENUINE)
            continue
        verified.append(VerifiedItem(item.index, item.client_id, key.person_id, at, _SOURCES[item.method]))
    return verified


def _keys(qr_ids: set[int], ble_ids: set[int], oldest: datetime | None) -> tuple[dict[int, _Key], dict[int, _Key]]:
    """The personal-code keys with these ids (a code's person_ref) and the Bluetooth keys with these ids
    (a token's key_id), decrypted; one query for both."""
    # A phone may advertise any 32-bit id; the database's ids stop at MAX_ROW_ID.
    qr_ids = {i for i in qr_ids if 0 < i <= MAX_ROW_ID}
    ble_ids = {i for i in ble_ids if 0 < i <= MAX_ROW_ID}
    found: dict[str, dict[int, _Key]] = {"qr": {}, "ble": {}}
    if oldest is None or not (qr_ids or ble_ids):
        return found["qr"], found["ble"]
    keys = PersonalCodeKey.__table__  # table columns: rows come back as plain tuples, without the ORM's loading
    wanted = [
        and_(keys.c.purpose == purpose, _among(keys.c.id, sorted(ids)))
        for purpose, ids in (("qr", qr_ids), ("ble", ble_ids))
        if ids
    ]
    rows = db.session.execute(
        select(keys.c.id, keys.c.purpose, keys.c.person_id, keys.c.key_enc, keys.c.revoked_at).where(
            or_(*wanted), or_(keys.c.revoked_at.is_(None), keys.c.revoked_at > oldest)
        )
    ).all()
    ring = keyring()
    for key_id, purpose, person_id, key_enc, revoked_at in rows:
        try:
            # Stored as app/services/personal_codes.py writes it: standard base64 under its context.
            key = binascii.a2b_base64(ring.decrypt(key_enc, context=PERSONAL_KEY_CONTEXT), strict_mode=True)
        except (PersonalDataError, binascii.Error, ValueError):
            log.warning("personal code key %s (%s) cannot be decrypted", key_id, purpose)
            continue
        found[purpose][key_id] = _Key(person_id, key, revoked_at)
    return found["qr"], found["ble"]
