"""Health officials' pages: cases, exposures, approval, stop switch, dashboard."""

from __future__ import annotations

import time
from datetime import date
from functools import wraps
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import case as sql_case
from sqlalchemy import func, select

from app.errors import PermissionDenied, ValidationError
from app.extensions import db, limiter
from app.models import Case, Exposure, ExposureStatus, OfficialRole, Person, Venue, utcnow
from app.services import audit, case_imports, cases, notices, officials, outbreak_stats

bp = Blueprint("officials", __name__, url_prefix="/official")

# Read with a default until the setting joins app/config.py.
PUBLIC_ENDPOINTS = {"officials.login"}


def _session_minutes() -> int:
    return int(current_app.config["OFFICIAL_SESSION_MINUTES"])


@bp.before_request
def _load_official() -> Any:
    g.official = None
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    seen = session.get("official_seen", 0)
    official = officials.get_active(session.get("official_id"))
    if official is None or time.time() - float(seen) > _session_minutes() * 60:
        expired = official is not None
        _forget_official()
        return redirect(url_for("officials.login", expired=1 if expired else None))
    session["official_seen"] = time.time()
    g.official = official
    return None


def _forget_official() -> None:
    # The cookie session holds no server-side id to fix, so only the official's own keys go.
    for key in ("official_id", "official_seen", "totp_pending"):
        session.pop(key, None)


@bp.context_processor
def _banner() -> dict[str, Any]:
    return {"halt": notices.halt_state(), "official": g.get("official")}


def supervisor_only(view: Any) -> Any:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if g.official.role != OfficialRole.SUPERVISOR:
            raise PermissionDenied("Only a supervisor can do this.")
        return view(*args, **kwargs)

    return wrapper


def _login_key() -> str:
    return f"{request.remote_addr}|{(request.form.get('email') or '').strip().lower()}"


def _base_url() -> str:
    return current_app.config["PUBLIC_BASE_URL"]


def _date(name: str, required: bool = False) -> date | None:
    raw = (request.form.get(name) or "").strip()
    if not raw:
        if required:
            raise ValidationError(f"Fill in {name.replace('_', ' ')}.", field=name)
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValidationError(f"{name.replace('_', ' ').capitalize()} is not a date.", field=name) from None


# --- sign-in ---------------------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit("10 per minute", key_func=_login_key, methods=["POST"])
def login() -> Any:
    error = None
    if request.method == "POST":
        try:
            official = officials.authenticate(
                request.form.get("email", ""), request.form.get("password", ""), request.form.get("code", ""),
                now=utcnow(),
            )  # fmt: skip
        except officials.SignInFailed as exc:
            error = exc.message
            db.session.commit()  # keep the failed-attempt audit entry
            return render_template("officials/login.html", error=error), 401
        _forget_official()
        session["official_id"] = official.id
        session["official_seen"] = time.time()
        return redirect(url_for("officials.index"))
    expired = request.args.get("expired")
    return render_template("officials/login.html", error=None, expired=expired)


@bp.post("/logout")
def logout() -> Any:
    _forget_official()
    return redirect(url_for("officials.login"))


@bp.route("/totp", methods=["GET", "POST"])
def totp() -> Any:
    official = g.official
    if request.method == "POST":
        officials.enrol_totp(official, session.get("totp_pending", ""), request.form.get("code", ""), now=utcnow())
        session.pop("totp_pending", None)
        flash("Second factor enabled.")
        return redirect(url_for("officials.index"))
    secret = officials.new_totp_secret()
    session["totp_pending"] = secret
    uri = officials.totp_uri(official, secret)
    return render_template("officials/totp.html", qr=officials.qr_svg(uri), secret=secret,
                           enrolled=official.totp_secret_enc is not None)  # fmt: skip


# --- review ----------------------------------------------------------------------------------------


@bp.get("/")
def index() -> Any:
    new = Exposure.status == ExposureStatus.NEW
    high = func.sum(sql_case((Exposure.risk == "high", 1), else_=0))
    by_case = db.session.execute(
        select(Exposure.case_id, func.count(), high).where(new).group_by(Exposure.case_id).order_by(Exposure.case_id)
    ).all()
    by_venue = db.session.execute(
        select(Venue.id, Venue.name, func.count(), high)
        .join(Exposure, Exposure.venue_id == Venue.id)
        .where(new)
        .group_by(Venue.id, Venue.name)
        .order_by(func.count().desc())
    ).all()
    recent = db.session.scalars(select(Case).order_by(Case.created_at.desc()).limit(20)).all()
    audit.record("official", g.official.id, "exposures.view", now=utcnow(), target="new exposures by case and venue")
    return render_template("officials/index.html", by_case=by_case, by_venue=by_venue, recent=recent)


@bp.route("/cases/new", methods=["GET", "POST"])
def new_case() -> Any:
    if request.method == "GET":
        return render_template("officials/new_case.html")
    recorded = cases.record_case(
        phone=request.form.get("phone"),
        subject=request.form.get("subject"),
        tested_on=_date("tested_on", required=True),  # type: ignore[arg-type]
        symptom_onset=_date("symptom_onset"),
        isolated_on=_date("isolated_on"),
        now=utcnow(),
        lead_days=int(current_app.config["MATCH_LEAD_DAYS"]),
        issuer=current_app.config["OIDC_ISSUER"],
        official_id=g.official.id,
    )
    if recorded.visits_on_record == 0:
        flash("Case recorded. This person has no visits on record, so nobody will be notified.")
    else:
        flash(f"Case recorded; {recorded.visits_on_record} visit(s) on record will be matched within a minute.")
    return redirect(url_for("officials.case", case_id=recorded.case.id))


@bp.get("/cases/<int:case_id>")
def case(case_id: int) -> Any:
    item = cases.get_case(case_id)
    now = utcnow()
    person = db.session.get(Person, item.person_id)
    rows = db.session.execute(
        select(Exposure, Venue.name, Person)
        .join(Venue, Venue.id == Exposure.venue_id)
        .join(Person, Person.id == Exposure.person_id)
        .where(Exposure.case_id == case_id)
        .order_by(Exposure.risk, Exposure.id)
        .limit(500)
    ).all()
    contacts = [(e, venue_name, cases.masked_phone_of(p)) for e, venue_name, p in rows]
    audit.record("official", g.official.id, "case.view", now=now, subject_person_id=item.person_id, case_id=case_id)
    audit.record("official", g.official.id, "exposures.view", now=now, case_id=case_id,
                 target=f"{len(contacts)} masked contacts of case {case_id}")  # fmt: skip
    return render_template("officials/case.html", case=item, case_phone=cases.masked_phone_of(person),
                           contacts=contacts)  # fmt: skip


@bp.post("/cases/<int:case_id>/approve")
def approve_case(case_id: int) -> Any:
    approved, queued = notices.approve_case(case_id, g.official, now=utcnow(), public_base_url=_base_url())
    flash(_approved_message(approved, queued))
    return redirect(url_for("officials.case", case_id=case_id))


@bp.post("/venues/<int:venue_id>/approve")
def approve_venue(venue_id: int) -> Any:
    approved, queued = notices.approve_venue(venue_id, g.official, now=utcnow(), public_base_url=_base_url())
    flash(_approved_message(approved, queued))
    return redirect(url_for("officials.index"))


def _approved_message(approved: int, queued: int) -> str:
    if notices.sending_halted():
        return f"{approved} exposure(s) approved. Sending is stopped: notices will go out when it resumes."
    return f"{approved} exposure(s) approved; {queued} notice(s) queued."


@bp.post("/cases/<int:case_id>/annul")
def annul_case(case_id: int) -> Any:
    result = cases.annul_case(
        case_id, reason=request.form.get("reason", ""), official_id=g.official.id, now=utcnow(),
        public_base_url=_base_url(),
    )  # fmt: skip
    flash(f"Case annulled: {result.messages_cancelled} unsent notice(s) cancelled, "
          f"{result.retractions} retraction(s).")  # fmt: skip
    return redirect(url_for("officials.case", case_id=case_id))


@bp.post("/people/<int:person_id>/reveal")
def reveal(person_id: int) -> Any:
    case_id = request.form.get("case_id", type=int)
    phone = officials.reveal_phone(g.official, person_id, request.form.get("reason", ""), now=utcnow(),
                                   case_id=case_id)  # fmt: skip
    return render_template("officials/reveal.html", phone=phone, case_id=case_id)


@bp.post("/switch")
@supervisor_only
def switch() -> Any:
    is_on = request.form.get("state") == "on"
    queued = notices.set_sending_halted(is_on, g.official, request.form.get("reason", ""), now=utcnow(),
                                        public_base_url=_base_url())  # fmt: skip
    flash("All sending is stopped." if is_on else f"Sending resumed; {queued} held notice(s) queued.")
    return redirect(url_for("officials.index"))


@bp.route("/import", methods=["GET", "POST"])
def import_cases() -> Any:
    if request.method == "GET":
        return render_template("officials/import.html", result=None)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise ValidationError("Choose a CSV file to import.", field="file")
    try:
        text = upload.read().decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError("The file is not UTF-8 text.", field="file") from None
    result = case_imports.import_cases(text, now=utcnow(), lead_days=int(current_app.config["MATCH_LEAD_DAYS"]),
                                       issuer=current_app.config["OIDC_ISSUER"], official_id=g.official.id)  # fmt: skip
    return render_template("officials/import.html", result=result)


# --- dashboard -------------------------------------------------------------------------------------


@bp.get("/dashboard")
def dashboard() -> Any:
    now = utcnow()
    days = outbreak_stats.daily(now)
    label = [d.day.strftime("%d.%m") for d in days]
    sent = [d.sent + d.delivered for d in days]
    charts = {
        "Cases per day": outbreak_stats.bars(list(zip(label, [d.cases for d in days], strict=True))),
        "Exposures per day": outbreak_stats.bars(list(zip(label, [d.exposures for d in days], strict=True))),
        "Notices sent per day": outbreak_stats.bars(list(zip(label, sent, strict=True))),
    }
    return render_template("officials/dashboard.html", days=days, charts=charts,
                           zone=current_app.config["DEFAULT_TIMEZONE"],
                           venues=outbreak_stats.top_venues(now), failed=outbreak_stats.failed_message_count(),
                           outbreaks=outbreak_stats.outbreak_count(now))  # fmt: skip


@bp.get("/dashboard.csv")
def dashboard_csv() -> Response:
    body = outbreak_stats.export_csv(utcnow())
    return Response(body, mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=outbreak-dashboard.csv"})  # fmt: skip
