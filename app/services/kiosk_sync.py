"""The server side of kiosk tablets: enrolment, bearer authentication, heartbeats and check-in batches.

The byte formats a kiosk sends are specified in docs/kiosk-protocols.md; `venue_kiosk.codes` (stdlib
only) is the reference implementation both sides use.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import ARRAY, ColumnElement, any_, bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from app.errors import DomainError, NotFoundError, ValidationError
from app.extensions import db
from app.models import (
    Checkin,
    CheckinSource,
    CheckoutReason,
    Entrance,
    Kiosk,
    KioskPairingCode,
    Person,
    PersonalCodeKey,
    Venue,
)
from app.services import audit
from app.services.personal_codes import KEY_CONTEXT as PERSONAL_KEY_CONTEXT
from app.services.personal_data import PersonalDataError, keyring, secret_hash
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
WRITE_ATTEMPTS = 3

_SOURCES = {"kiosk_scanner": CheckinSource.KIOSK_SCANNER, "ble": CheckinSource.BLE}
_PAIRING_DIGITS = re.compile(r"\d{12}")


class KioskUnauthorized(DomainError):
    """No valid bearer credential: the kiosk shows "revoked" and stops syncing."""

    status = 401


class KioskBusy(DomainError):
    """Concurrent writes for the same people kept colliding; the kiosk retries the batch later."""

    status = 503


class _StaleVisits(Exception):
    """A visit changed between reading and writing it (another request won the race)."""


# --- enrolment -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Enrolment:
    kiosk: Kiosk
    credential: str
    rotation_secret: str  # base64url, as the kiosk stores it
    venue_name: str
    entrance_name: str


def normalise_pairing_code(raw: object) -> str:
    """ "1234 5678 9012", "123456789012" and "1234-5678-9012" are the same code."""
    digits = re.sub(r"[\s\-]", "", raw) if isinstance(raw, str) else ""
    if not _PAIRING_DIGITS.fullmatch(digits):
        raise ValidationError("A pairing code has 12 digits, like 1234-5678-9012.", field="pairing_code")
    return "-".join(digits[i : i + 4] for i in range(0, 12, 4))


def enrol(raw_code: object, now: datetime) -> Enrolment:
    """Exchange a one-time pairing code for a new kiosk's credential and rotation secret.

    The code works once and until it expires. The credential and the secret are returned only here:
    the credential is stored as a hash, the secret encrypted (the visitor pages decrypt it to verify
    the kiosk's on-screen codes).
    """
    code = normalise_pairing_code(raw_code)
    pairing = db.session.scalar(select(KioskPairingCode).where(KioskPairingCode.code_hash == secret_hash(code)))
    if pairing is None:
        raise NotFoundError("This pairing code is not known. Check the digits or ask for a new code.")
    if pairing.used_at is not None:
        raise ValidationError("This pairing code was already used. Ask the venue operator for a new one.")
    if pairing.expires_at <= now:
        raise ValidationError("This pairing code has expired. Ask the venue operator for a new one.")
    entrance, venue = db.session.execute(
        select(Entrance, Venue).join(Venue, Entrance.venue_id == Venue.id).where(Entrance.id == pairing.entrance_id)
    ).one()
    if entrance.archived_at is not None or venue.archived_at is not None:
        raise ValidationError("This entrance no longer takes check-ins.")
    # Claim the code with a guarded update so two tablets racing with one code cannot both enrol.
    claimed = db.session.execute(
        update(KioskPairingCode)
        .where(KioskPairingCode.id == pairing.id, KioskPairingCode.used_at.is_(None))
        .values(used_at=now),
        execution_options={"synchronize_session": False},
    )
    if claimed.rowcount != 1:
        raise ValidationError("This pairing code was already used. Ask the venue operator for a new one.")
    credential = secrets.token_urlsafe(32)
    rotation_secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
    kiosk = Kiosk(
        entrance_id=entrance.id,
        name=f"{venue.name} — {entrance.name}"[:100],
        credential_hash=secret_hash(credential),
        rotation_secret_enc=keyring().encrypt(rotation_secret, context="kiosk"),
        enrolled_at=now,
        last_seen_at=now,
    )
    db.session.add(kiosk)
    db.session.flush()
    audit.record("kiosk", kiosk.id, "kiosk_enrolled", now=now, target=f"entrance:{entrance.id}")
    return Enrolment(kiosk, credential, rotation_secret, venue.name, entrance.name)


# --- authentication and heartbeats ---------------------------------------------------------------


@dataclass(frozen=True)
class KioskContext:
    """An authenticated kiosk and where it stands."""

    kiosk: Kiosk
    entrance: Entrance
    venue: Venue


def authenticate(authorization: str | None) -> KioskContext:
    """The kiosk whose credential is in an `Authorization: Bearer ...` header; 401 otherwise."""
    scheme, _, credential = (authorization or "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential or len(credential) > 200:
        raise KioskUnauthorized("This request needs the kiosk's credential (Authorization: Bearer ...).")
    row = db.session.execute(
        select(Kiosk, Entrance, Venue)
        .join(Entrance, Kiosk.entrance_id == Entrance.id)
        .join(Venue, Entrance.venue_id == Venue.id)
        .where(Kiosk.credential_hash == secret_hash(credential))
    ).one_or_none()
    if row is None:
        raise KioskUnauthorized("This kiosk credential is not known. Pair the kiosk again.")
    kiosk, entrance, venue = row
    if kiosk.revoked_at is not None:
        raise KioskUnauthorized("This kiosk was revoked. Pair it again with a new code.")
    return KioskContext(kiosk, entrance, venue)


def parse_time(raw: object, field_name: str) -> datetime:
    if not isinstance(raw, str) or len(raw) > 40:
        raise ValidationError(f"{field_name} must be an ISO 8601 time with a UTC offset.", field=field_name)
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationError(f"{field_name} is not an ISO 8601 time.", field=field_name) from None
    if value.tzinfo is None:
        raise ValidationError(f"{field_name} must include a UTC offset.", field=field_name)
    return value


def record_heartbeat(ctx: KioskContext, body: Mapping[str, Any], now: datetime) -> None:
    """Remember when the kiosk was last heard from and what it reported (queue, inputs, version, clock)."""
    queue_length = body.get("queue_length", 0)
    if not isinstance(queue_length, int) or isinstance(queue_length, bool) or queue_length < 0:
        raise ValidationError("queue_length must be a whole number, 0 or more.", field="queue_length")
    flags = {}
    for name in ("ble_ok", "scanner_ok"):
        value = body.get(name, False)
        if not isinstance(value, bool):
            raise ValidationError(f"{name} must be true or false.", field=name)
        flags[name] = value
    version = body.get("version", "")
    if not isinstance(version, str) or len(version) > 40:
        raise ValidationError("version must be a short text.", field="version")
    status: dict[str, Any] = {"queue_length": queue_length, **flags, "version": version}
    if body.get("sent_at") is not None:
        # One-way estimate (includes the network delay): enough to spot a tablet whose clock is off.
        status["clock_offset_s"] = round((now - parse_time(body["sent_at"], "sent_at")).total_seconds(), 1)
    ctx.kiosk.last_seen_at = now
    ctx.kiosk.last_status = json.dumps(status, separators=(",", ":"), ensure_ascii=False)[:500]
    db.session.flush()


# --- check-in batches ------------------------------------------------------------------------------


class ItemResult(NamedTuple):
    index: int
    client_id: str | None
    status: str  # accepted | duplicate | rejected
    reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "client_id": self.client_id, "status": self.status, "reason": self.reason}


class VerifiedItem(NamedTuple):
    """A check-in whose token verified: who, when, how."""

    index: int
    client_id: str
    person_id: int
    observed_at: datetime
    source: CheckinSource


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
    for index, raw in enumerate(raw_items):
        item_or_reason = _parse_item(index, raw, now, earliest)
        client_id = _client_id(raw.get("client_id")) if isinstance(raw, dict) else None
        if isinstance(item_or_reason, str):
            results[index] = ItemResult(index, client_id, "rejected", item_or_reason)
        elif item_or_reason.client_id in seen:
            results[index] = ItemResult(index, client_id, "duplicate", "The same client id came twice in this batch.")
        else:
            seen.add(item_or_reason.client_id)
            items.append(item_or_reason)
    ctx.kiosk.last_seen_at = now
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
    known = dict(
        db.session.execute(
            select(Checkin.client_id, Checkin.kiosk_id).where(_among(Checkin.client_id, [i.client_id for i in items]))
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
    qr_keys = _keys("qr", {p.person_ref for p in personal.values()}, oldest)
    ble_keys = _keys("ble", {t.key_id for t in ble.values()}, oldest)
    verified = []
    for item in items:
        person_id: int | None = None
        if item.index in personal:
            code = personal[item.index]
            if not _is_step_low_fresh(code.step_low, item.observed_at, item.window_steps):
                results[item.index] = ItemResult(item.index, item.client_id, "rejected", _EXPIRED)
                continue
            key = qr_keys.get(code.person_ref)
            if (
                key is not None
                and key.is_valid_at(item.observed_at)
                and codes.verify_personal_code(code, lambda _ref, k=key.key: k, item.observed_at, item.window_steps)
            ):
                person_id = key.person_id
        elif item.index in ble:
            token = ble[item.index]
            if not codes.is_ble_step_fresh(token, item.observed_at, item.window_steps):
                results[item.index] = ItemResult(item.index, item.client_id, "rejected", _EXPIRED)
                continue
            key = ble_keys.get(token.key_id)
            if (
                key is not None
                and key.is_valid_at(item.observed_at)
                and codes.verify_ble_token(token, lambda _id, k=key.key: k, item.observed_at, item.window_steps)
            ):
                person_id = key.person_id
        else:
            continue  # damaged, already answered
        if person_id is None:
            results[item.index] = ItemResult(item.index, item.client_id, "rejected", _NOT_GENUINE)
            continue
        verified.append(VerifiedItem(item.index, item.client_id, person_id, item.observed_at, _SOURCES[item.method]))
    return verified


def _is_step_low_fresh(step_low: int, at: datetime, window_steps: int) -> bool:
    current = codes.time_step(at, codes.PERSONAL_STEP_S)
    return any((current + d) % 4096 == step_low for d in range(-window_steps, window_steps + 1))


def _keys(purpose: str, key_ids: set[int], oldest: datetime | None) -> dict[int, _Key]:
    """The purpose's keys with these ids (the code's person_ref or key_id), decrypted; one query."""
    if not key_ids or oldest is None:
        return {}
    rows = db.session.execute(
        select(
            PersonalCodeKey.id, PersonalCodeKey.person_id, PersonalCodeKey.key_enc, PersonalCodeKey.revoked_at
        ).where(
            _among(PersonalCodeKey.id, sorted(key_ids)),
            PersonalCodeKey.purpose == purpose,
            or_(PersonalCodeKey.revoked_at.is_(None), PersonalCodeKey.revoked_at > oldest),
        )
    ).all()
    ring = keyring()
    found: dict[int, _Key] = {}
    for key_id, person_id, key_enc, revoked_at in rows:
        try:
            # Stored as app/services/personal_codes.py writes it: standard base64 under its context.
            key = base64.b64decode(ring.decrypt(key_enc, context=PERSONAL_KEY_CONTEXT), validate=True)
        except (PersonalDataError, binascii.Error, ValueError):
            log.warning("personal code key %s (%s) cannot be decrypted", key_id, purpose)
            continue
        found[key_id] = _Key(person_id, key, revoked_at)
    return found


# --- recording: the visit rules applied to a whole batch ------------------------------------------------

MAX_STAY = timedelta(hours=24)  # venues' default stay is at most 24 h (ck_venues_default_stay_range)
_CONTINUED = "Checked in; the visit already in progress here continues."
_CREATED = "Checked in."


@dataclass
class PlannedVisit:
    """A person's visit as the planner sees it: an existing row (id set) or a new one."""

    venue_id: int
    checked_in_at: datetime
    planned_checkout_at: datetime
    checked_out_at: datetime | None = None
    checkout_reason: CheckoutReason | None = None
    id: int | None = None
    item: VerifiedItem | None = None
    old_checked_out_at: datetime | None = None
    is_changed: bool = False

    @property
    def ends_at(self) -> datetime:
        return self.checked_out_at or self.planned_checkout_at

    def close(self, at: datetime, reason: CheckoutReason) -> None:
        self.checked_out_at, self.checkout_reason, self.is_changed = at, reason, True


@dataclass
class PersonPlan:
    visits: list[PlannedVisit]
    outcomes: dict[int, tuple[str, str | None]] = field(default_factory=dict)


def plan_visits(
    visits: list[PlannedVisit], items: Iterable[VerifiedItem], venue_id: int, stay: timedelta, now: datetime
) -> PersonPlan:
    """Apply one person's kiosk check-ins, oldest first, to their known visits (pure; no I/O).

    The rules of app/services/checkins.py, extended to check-ins that arrive late from an offline kiosk:
    - a check-in inside a visit at this venue continues it (an open visit's planned end moves to t + stay);
    - otherwise the open visit that began before t ends at t (or at its planned end if that passed), and
      a visit elsewhere that only ended automatically after t is cut back to t;
    - the new visit ends where the person's next known visit begins, or at its planned end if that has
      passed, else it stays open.
    """
    plan = PersonPlan(sorted(visits, key=lambda v: v.checked_in_at))
    for item in sorted(items, key=lambda i: i.observed_at):
        t = item.observed_at
        here = [v for v in plan.visits if v.venue_id == venue_id and v.checked_in_at <= t < v.ends_at]
        if here:
            visit = here[-1]
            if visit.checked_out_at is None and visit.planned_checkout_at < t + stay:
                visit.planned_checkout_at, visit.is_changed = t + stay, True
            plan.outcomes[item.index] = ("accepted", _CONTINUED)
            continue
        for visit in plan.visits:
            if visit.checked_out_at is None and visit.checked_in_at <= t:
                if visit.planned_checkout_at <= t:
                    visit.close(visit.planned_checkout_at, CheckoutReason.AUTO)
                else:
                    visit.close(t, CheckoutReason.NEXT_CHECKIN)
            elif visit.checkout_reason is CheckoutReason.AUTO and visit.checked_in_at <= t < visit.ends_at:
                visit.close(t, CheckoutReason.NEXT_CHECKIN)
        following = min((v.checked_in_at for v in plan.visits if v.checked_in_at > t), default=None)
        new = PlannedVisit(venue_id, t, t + stay, item=item)
        if following is not None and following < new.planned_checkout_at:
            new.checked_out_at, new.checkout_reason = following, CheckoutReason.NEXT_CHECKIN
        elif following is not None or new.planned_checkout_at <= now:
            new.checked_out_at, new.checkout_reason = new.planned_checkout_at, CheckoutReason.AUTO
        plan.visits.append(new)
        plan.visits.sort(key=lambda v: v.checked_in_at)
        plan.outcomes[item.index] = ("accepted", _CREATED)
    return plan


def record_visits_in_bulk(
    ctx: KioskContext, items: Sequence[VerifiedItem], now: datetime
) -> dict[int, tuple[str, str | None]]:
    """Record verified check-ins with a few statements per batch; retried when a concurrent write wins.

    The people's visits are read and locked in person order (so two batches cannot deadlock), the
    rules are applied in memory by `plan_visits`, and the changes are written with guarded updates and
    one multi-row insert. A lost race (an open visit or client id inserted meanwhile, a visit closed
    meanwhile) rolls back the savepoint and the batch is planned again.
    """
    for _attempt in range(WRITE_ATTEMPTS):
        try:
            with db.session.begin_nested():
                return _record_once(ctx, items, now)
        except (IntegrityError, _StaleVisits):
            continue
        except OperationalError as exc:
            if "database is locked" in str(exc.orig):
                # SQLite: another worker holds the write lock and our read snapshot cannot be upgraded;
                # only a new transaction helps, so the kiosk sends the batch again after its backoff.
                raise KioskBusy("The database is busy; send this batch again shortly.") from None
            if getattr(exc.orig, "sqlstate", None) not in {"40001", "40P01"}:  # serialization, deadlock
                raise
    raise KioskBusy("The server is busy with the same visitors; send this batch again shortly.")


def _record_once(ctx: KioskContext, items: Sequence[VerifiedItem], now: datetime) -> dict[int, tuple[str, str | None]]:
    checkins = Checkin.__table__
    by_person: dict[int, list[VerifiedItem]] = defaultdict(list)
    for item in items:
        by_person[item.person_id].append(item)
    since = min(i.observed_at for i in items) - MAX_STAY
    rows = db.session.execute(
        select(
            checkins.c.id,
            checkins.c.person_id,
            checkins.c.venue_id,
            checkins.c.checked_in_at,
            checkins.c.planned_checkout_at,
            checkins.c.checked_out_at,
            checkins.c.checkout_reason,
        )
        .where(
            _among(checkins.c.person_id, sorted(by_person)),
            or_(checkins.c.checked_in_at >= since, checkins.c.checked_out_at.is_(None)),
        )
        .order_by(checkins.c.person_id, checkins.c.id)
        .with_for_update()
    ).all()
    known: dict[int, list[PlannedVisit]] = defaultdict(list)
    for row in rows:
        known[row.person_id].append(
            PlannedVisit(
                row.venue_id,
                row.checked_in_at,
                row.planned_checkout_at,
                row.checked_out_at,
                CheckoutReason(row.checkout_reason) if row.checkout_reason else None,
                id=row.id,
                old_checked_out_at=row.checked_out_at,
            )
        )
    stay = timedelta(minutes=ctx.venue.default_stay_minutes)
    outcomes: dict[int, tuple[str, str | None]] = {}
    changed: list[dict[str, Any]] = []
    new: list[tuple[Any, ...]] = []
    where = (ctx.venue.id, ctx.entrance.id, ctx.kiosk.id)
    for person_id, person_items in by_person.items():
        plan = plan_visits(known[person_id], person_items, ctx.venue.id, stay, now)
        outcomes.update(plan.outcomes)
        for visit in plan.visits:
            if visit.item is not None:
                new.append(_new_row(where, visit, now))
            elif visit.is_changed:
                changed.append(
                    {
                        "b_id": visit.id,
                        "b_old_out": visit.old_checked_out_at,
                        "b_out": visit.checked_out_at,
                        "b_reason": visit.checkout_reason,
                        "b_planned": visit.planned_checkout_at,
                    }
                )
    if changed:
        # Guarded by the end time we read: a visit closed meanwhile by someone else is not overwritten.
        result = db.session.execute(
            update(checkins)
            .where(
                checkins.c.id == bindparam("b_id"),
                checkins.c.checked_out_at.is_not_distinct_from(
                    bindparam("b_old_out", type_=checkins.c.checked_out_at.type)
                ),
            )
            .values(
                checked_out_at=bindparam("b_out"),
                checkout_reason=bindparam("b_reason"),
                planned_checkout_at=bindparam("b_planned"),
            ),
            changed,
        )
        if db.session.get_bind().dialect.supports_sane_multi_rowcount and result.rowcount != len(changed):
            raise _StaleVisits
    if new:
        _insert_visits(new)
    # No "last seen" write: it only keeps a person from the retention purge, and the visit written here
    # already does (a person with any visit is never purged, and the visit lives as long as its date
    # would have kept "last seen" alive). Skipping it saves an indexed row update per item.
    return outcomes


def _among(column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """`column IN (...)`; on PostgreSQL `= ANY(array)`: one parameter instead of 500 keeps the
    statement short enough for psycopg to cache its parsing, which otherwise costs more than the query."""
    if db.session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(list(values))


# A new visit's columns, with the PostgreSQL types binary COPY writes them as.
_NEW_COLUMNS: tuple[tuple[str, str], ...] = (
    ("person_id", "int4"),
    ("venue_id", "int4"),
    ("entrance_id", "int4"),
    ("kiosk_id", "int4"),
    ("party_size", "int2"),
    ("source", "text"),
    ("checked_in_at", "timestamptz"),
    ("planned_checkout_at", "timestamptz"),
    ("checked_out_at", "timestamptz"),
    ("checkout_reason", "text"),
    ("client_id", "text"),
    ("created_at", "timestamptz"),
)
_NEW_NAMES = tuple(name for name, _ in _NEW_COLUMNS)
_COPY_NEW = f"COPY checkins ({', '.join(_NEW_NAMES)}) FROM STDIN (FORMAT BINARY)"


def _new_row(where: tuple[int, int, int], visit: PlannedVisit, now: datetime) -> tuple[Any, ...]:
    """A new visit in _NEW_COLUMNS order (venue, entrance and kiosk ids in `where`); enums as their values."""
    item = visit.item
    assert item is not None
    reason = visit.checkout_reason
    return (
        item.person_id,
        *where,
        1,
        item.source.value,
        visit.checked_in_at,
        visit.planned_checkout_at,
        visit.checked_out_at,
        None if reason is None else reason.value,
        item.client_id,
        now,
    )


def _insert_visits(rows: list[tuple[Any, ...]]) -> None:
    connection = db.session.connection()
    if connection.dialect.name != "postgresql":
        db.session.execute(Checkin.__table__.insert(), [dict(zip(_NEW_NAMES, row, strict=True)) for row in rows])
        return
    # COPY is PostgreSQL's bulk path: about ten times faster than multi-row INSERTs from Python here,
    # and in binary a row costs about 0.5 us to write instead of 6 us as text (no timestamp formatting).
    driver = connection.connection.driver_connection
    try:
        with driver.cursor() as cursor, cursor.copy(_COPY_NEW) as copy:
            copy.set_types([pg_type for _, pg_type in _NEW_COLUMNS])
            for row in rows:
                copy.write_row(row)
    except connection.dialect.dbapi.IntegrityError as exc:  # an open visit or client id inserted meanwhile
        raise _StaleVisits from exc


def record_each_with_check_in(
    ctx: KioskContext, items: Sequence[VerifiedItem], now: datetime
) -> dict[int, tuple[str, str | None]]:
    """The same job through `checkins.check_in`, one item at a time (slower; the single rule path)."""
    from app.services.checkins import check_in

    people = {p.id: p for p in db.session.scalars(select(Person).where(Person.id.in_({i.person_id for i in items})))}
    outcomes: dict[int, tuple[str, str | None]] = {}
    for item in sorted(items, key=lambda i: i.observed_at):
        try:
            result = check_in(
                people[item.person_id],
                ctx.venue,
                ctx.entrance,
                item.source,
                item.observed_at,
                client_id=item.client_id,
                kiosk_id=ctx.kiosk.id,
            )
        except DomainError as exc:
            outcomes[item.index] = ("rejected", exc.message)
        except IntegrityError:
            outcomes[item.index] = ("retry", "The server was busy with this visitor; send again.")
        else:
            outcomes[item.index] = ("accepted", _CREATED if result.status == "created" else _CONTINUED)
    return outcomes


# --- administration (CLI) ---------------------------------------------------------------------------


def all_kiosks() -> list[tuple[Kiosk, Entrance, Venue]]:
    rows = db.session.execute(
        select(Kiosk, Entrance, Venue)
        .join(Entrance, Kiosk.entrance_id == Entrance.id)
        .join(Venue, Entrance.venue_id == Venue.id)
        .order_by(Kiosk.id)
    ).all()
    return [(k, e, v) for k, e, v in rows]


def revoke(kiosk_id: int, now: datetime, actor_kind: str = "system", actor_id: int | None = None) -> Kiosk:
    """Stop a kiosk's credential at once (its next request gets 401); idempotent."""
    kiosk = db.session.get(Kiosk, kiosk_id)
    if kiosk is None:
        raise NotFoundError(f"No kiosk with id {kiosk_id}.")
    if kiosk.revoked_at is None:
        kiosk.revoked_at = now
        audit.record(actor_kind, actor_id, "kiosk_revoked", now=now, target=f"kiosk:{kiosk.id}")
        db.session.flush()
    return kiosk


def pairing_entrance(entrance_id: int) -> tuple[Entrance, Venue]:
    row = db.session.execute(
        select(Entrance, Venue).join(Venue, Entrance.venue_id == Venue.id).where(Entrance.id == entrance_id)
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"No entrance with id {entrance_id}.")
    entrance, venue = row
    if entrance.archived_at is not None or venue.archived_at is not None:
        raise ValidationError("This entrance no longer takes check-ins.")
    return entrance, venue
