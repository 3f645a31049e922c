"""Venue operators' pages: sign-up, venues, posters, kiosks and the occupancy dashboard."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Blueprint, Response, current_app, g, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as BaseResponse

from app.errors import DomainError, NotFoundError, ValidationError
from app.extensions import db, limiter
from app.models import EntranceKind, Operator, OperatorRole, utcnow
from app.services import accounts, kiosks, occupancy, posters, venues

bp = Blueprint("operators", __name__, url_prefix="/operator")

F = TypeVar("F", bound=Callable[..., Any])
LOGIN_LIMIT = "10/minute"


# --- session ----------------------------------------------------------------------------------


def sign_in(operator: Operator) -> None:
    # The session lives in a signed cookie, so there is no server-side session id to fixate.
    session["operator_id"] = operator.id
    session["operator_fp"] = accounts.session_fingerprint(operator)


def sign_out() -> None:
    session.pop("operator_id", None)
    session.pop("operator_fp", None)


def signed_in_operator() -> Operator | None:
    """The operator of this session, if the session is still valid (same password, not disabled)."""
    operator_id = session.get("operator_id")
    if not isinstance(operator_id, int):
        return None
    operator = db.session.get(Operator, operator_id)
    if (
        operator is None
        or operator.disabled_at is not None
        or operator.organisation.archived_at is not None
        or session.get("operator_fp") != accounts.session_fingerprint(operator)
    ):
        return None
    return operator


def login_required(view: F) -> F:
    """Pages of signed-in operators; others are sent to the sign-in page and come back afterwards."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        operator = signed_in_operator()
        if operator is None:
            session.pop("operator_id", None)
            return redirect(url_for("operators.login", next=request.full_path if request.method == "GET" else None))
        g.operator = operator
        return view(*args, **kwargs)

    return cast(F, wrapper)


def _operator() -> Operator:
    return cast(Operator, g.operator)


def _safe_next(target: str | None) -> str:
    # Only paths on this site: an open redirect would turn the sign-in page into a phishing tool.
    if target and target.startswith("/operator") and not target.startswith("//"):
        return target
    return url_for("operators.index")


def _form_int(name: str, *, required: bool = False) -> int | None:
    raw = request.form.get(name, "").strip()
    if not raw:
        if required:
            raise ValidationError(f"Please fill in {name.replace('_', ' ')}.", field=name)
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValidationError(f"{name.replace('_', ' ').capitalize()} must be a whole number.", field=name) from None


def _render_form(template: str, error: DomainError, **context: Any) -> tuple[str, int]:
    return render_template(template, error=error.message, form=request.form, **context), error.status


# --- accounts ---------------------------------------------------------------------------------


@bp.route("/signup", methods=["GET", "POST"])
def signup() -> Any:
    if request.method == "GET":
        return render_template("operators/signup.html", form={})
    try:
        operator = accounts.create_organisation_with_owner(
            request.form.get("organisation", ""), request.form.get("email", ""), request.form.get("password", "")
        )
    except DomainError as exc:
        return _render_form("operators/signup.html", exc)
    operator.last_login_at = utcnow()
    sign_in(operator)
    return redirect(url_for("operators.new_venue"))


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(LOGIN_LIMIT, methods=["POST"])
def login() -> Any:
    if request.method == "GET":
        return render_template("operators/login.html", form={}, next=request.args.get("next", ""))
    try:
        operator = accounts.authenticate_operator(
            request.form.get("email", ""), request.form.get("password", ""), utcnow()
        )
    except DomainError as exc:
        return _render_form("operators/login.html", exc, next=request.form.get("next", ""))
    sign_in(operator)
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/logout")
def logout() -> BaseResponse:
    sign_out()
    return redirect(url_for("operators.login"))


@bp.route("/password", methods=["GET", "POST"])
@login_required
def password() -> Any:
    if request.method == "GET":
        return render_template("operators/password.html", form={})
    try:
        accounts.change_operator_password(
            _operator(), request.form.get("current_password", ""), request.form.get("new_password", "")
        )
    except DomainError as exc:
        return _render_form("operators/password.html", exc)
    sign_in(_operator())  # this session stays signed in; every other session ends
    return render_template("operators/password.html", form={}, done=True)


@bp.route("/team", methods=["GET", "POST"])
@login_required
def team() -> Any:
    operator = _operator()
    context: dict[str, Any] = {"members": accounts.list_operators(operator.organisation_id), "roles": OperatorRole}
    if request.method == "GET":
        return render_template("operators/team.html", form={}, **context)
    try:
        role = OperatorRole(request.form.get("role", "manager"))
    except ValueError:
        return _render_form("operators/team.html", ValidationError("Choose owner or manager."), **context)

    def accept_url(token: str) -> str:
        return posters.public_url(url_for("operators.accept_invitation", token=token))

    is_emailed = bool(current_app.config["SMTP_HOST"])
    try:
        # E-mail is optional: without an SMTP server the inviter passes the link on by hand.
        _, token = accounts.invite_operator(
            operator, request.form.get("email", ""), role, utcnow(), accept_url=accept_url if is_emailed else None
        )
    except DomainError as exc:
        return _render_form("operators/team.html", exc, **context)
    return render_template(
        "operators/team.html", form={}, invite_url=accept_url(token), is_emailed=is_emailed, **context
    )


@bp.route("/invitations/<token>", methods=["GET", "POST"])
def accept_invitation(token: str) -> Any:
    now = utcnow()
    invitation = accounts.find_invitation(token, now)
    if request.method == "GET":
        return render_template("operators/invitation.html", form={}, role=invitation.role)
    try:
        operator = accounts.accept_invitation(token, request.form.get("password", ""), now)
    except DomainError as exc:
        return _render_form("operators/invitation.html", exc, role=invitation.role)
    sign_in(operator)
    return redirect(url_for("operators.index"))


# --- venues -----------------------------------------------------------------------------------


@bp.get("/")
@login_required
def index() -> str:
    operator = _operator()
    return render_template(
        "operators/venues.html",
        organisation=operator.organisation,
        venues=venues.venues_of(operator.organisation_id),
    )


def _venue_fields() -> dict[str, Any]:
    return {
        "name": request.form.get("name", ""),
        "address": request.form.get("address", ""),
        "kind": request.form.get("kind", "other"),
        "timezone": request.form.get("timezone", "Europe/Moscow").strip(),
        "default_stay_minutes": _form_int("default_stay_minutes", required=True),
        "capacity": _form_int("capacity"),
    }


@bp.route("/venues/new", methods=["GET", "POST"])
@login_required
def new_venue() -> Any:
    context = {"kinds": venues.VENUE_KINDS, "venue": None}
    if request.method == "GET":
        return render_template("operators/venue_form.html", form={"default_stay_minutes": 60}, **context)
    try:
        fields = _venue_fields()
        entrance_names = tuple(n for n in request.form.get("entrances", "").splitlines() if n.strip())
        venue = venues.create_venue(
            _operator().organisation_id, entrance_names=entrance_names or ("Main entrance",), **fields
        )
    except DomainError as exc:
        return _render_form("operators/venue_form.html", exc, **context)
    return redirect(url_for("operators.venue", venue_id=venue.id))


@bp.route("/venues/<int:venue_id>/edit", methods=["GET", "POST"])
@login_required
def edit_venue(venue_id: int) -> Any:
    venue = venues.venue_of(_operator().organisation_id, venue_id)
    context = {"kinds": venues.VENUE_KINDS, "venue": venue}
    if request.method == "GET":
        form = {field: getattr(venue, field) or "" for field in venues.EDITABLE_FIELDS}
        return render_template("operators/venue_form.html", form=form, **context)
    try:
        venues.update_venue(venue, _venue_fields())
    except DomainError as exc:
        return _render_form("operators/venue_form.html", exc, **context)
    return redirect(url_for("operators.venue", venue_id=venue.id))


@bp.post("/venues/<int:venue_id>/archive")
@login_required
def archive_venue(venue_id: int) -> BaseResponse:
    venues.archive_venue(venues.venue_of(_operator().organisation_id, venue_id), utcnow())
    return redirect(url_for("operators.index"))


@bp.get("/venues/<int:venue_id>")
@login_required
def venue(venue_id: int) -> str:
    operator = _operator()
    venue = venues.venue_of(operator.organisation_id, venue_id)
    now = utcnow()
    hours = occupancy.hourly_checkins(venue, now)
    return render_template(
        "operators/venue.html",
        venue=venue,
        entrances=venues.open_entrances(venue),
        chart=occupancy.hourly_chart(hours),
        total_checkins=sum(h.checkins for h in hours),
        occupancy=occupancy.current_occupancy(venue, now),
        versions={e.id: posters.current_version(e) for e in venue.entrances},
        kiosks=[k for k in kiosks.kiosks_of(operator.organisation_id) if k[2].id == venue.id],
        entrance_kinds=EntranceKind,
    )


@bp.post("/venues/<int:venue_id>/entrances")
@login_required
def add_entrance(venue_id: int) -> BaseResponse:
    venue = venues.venue_of(_operator().organisation_id, venue_id)
    venues.add_entrance(venue, request.form.get("name", ""), venues.parse_entrance_kind(request.form.get("kind", "")))
    return redirect(url_for("operators.venue", venue_id=venue.id))


@bp.post("/entrances/<int:entrance_id>/edit")
@login_required
def edit_entrance(entrance_id: int) -> BaseResponse:
    entrance = venues.entrance_of(_operator().organisation_id, entrance_id)
    venues.update_entrance(
        entrance, request.form.get("name", ""), venues.parse_entrance_kind(request.form.get("kind", ""))
    )
    return redirect(url_for("operators.venue", venue_id=entrance.venue_id))


@bp.post("/entrances/<int:entrance_id>/archive")
@login_required
def archive_entrance(entrance_id: int) -> BaseResponse:
    entrance = venues.entrance_of(_operator().organisation_id, entrance_id)
    venues.archive_entrance(entrance, utcnow())
    return redirect(url_for("operators.venue", venue_id=entrance.venue_id))


# --- posters ----------------------------------------------------------------------------------


def download(data: bytes, media_type: str, filename: str) -> Response:
    """A file to save, never cached (posters carry signed tokens)."""
    response = Response(data, mimetype=media_type)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/entrances/<int:entrance_id>/poster.<fmt>")
@login_required
def poster(entrance_id: int, fmt: str) -> Response:
    entrance = venues.entrance_of(_operator().organisation_id, entrance_id)
    poster_format = posters.parse_format(fmt)
    data = posters.render_entrance_poster(
        entrance, poster_format, posters.parse_page_size(request.args.get("size")), utcnow()
    )
    return download(data, posters.MEDIA_TYPES[poster_format], posters.poster_filename(entrance, poster_format))


@bp.post("/entrances/<int:entrance_id>/reissue")
@login_required
def reissue_poster(entrance_id: int) -> BaseResponse:
    entrance = venues.entrance_of(_operator().organisation_id, entrance_id)
    if entrance.archived_at is not None:
        raise NotFoundError("No such entrance.")
    posters.issue_poster(entrance, utcnow())
    return redirect(url_for("operators.venue", venue_id=entrance.venue_id))


@bp.get("/posters.<archive>")
@login_required
def all_posters(archive: str) -> Response:
    if archive not in {"pdf", "zip"}:
        raise NotFoundError("Batches come as posters.pdf or posters.zip.")
    data = posters.render_organisation_posters(
        _operator().organisation_id, archive, posters.parse_page_size(request.args.get("size")), utcnow()
    )
    media_type = "application/pdf" if archive == "pdf" else "application/zip"
    return download(data, media_type, f"posters.{archive}")


# --- kiosks -----------------------------------------------------------------------------------


@bp.get("/kiosks")
@login_required
def kiosk_list() -> str:
    return render_template("operators/kiosks.html", kiosks=kiosks.kiosks_of(_operator().organisation_id), now=utcnow())


@bp.post("/entrances/<int:entrance_id>/pairing-code")
@login_required
def pairing_code(entrance_id: int) -> str:
    operator = _operator()
    entrance = venues.entrance_of(operator.organisation_id, entrance_id)
    if entrance.archived_at is not None or entrance.venue.archived_at is not None:
        raise ValidationError("Kiosks can only be paired with open venues and entrances.")
    now = utcnow()
    code = kiosks.create_pairing_code(entrance.id, now, created_by_id=operator.id)
    response = render_template(
        "operators/pairing.html", code=code, entrance=entrance, expires_at=now + kiosks.PAIRING_CODE_TTL
    )
    return response


@bp.post("/kiosks/<int:kiosk_id>/revoke")
@login_required
def revoke_kiosk(kiosk_id: int) -> BaseResponse:
    kiosks.revoke_kiosk(kiosks.kiosk_of(_operator().organisation_id, kiosk_id), utcnow())
    return redirect(url_for("operators.kiosk_list"))


@bp.after_request
def _no_store(response: Response) -> Response:
    # Pairing codes and invitation links are shown once; operator pages are private to the operator.
    response.headers.setdefault("Cache-Control", "no-store")
    return response
