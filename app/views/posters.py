"""Public poster pages: is this poster genuine and current?"""

from __future__ import annotations

from flask import Blueprint, render_template

from app.models import utcnow
from app.services import posters

bp = Blueprint("posters", __name__)


@bp.get("/verify/<token>")
def verify(token: str) -> tuple[str, int]:
    """Anyone may check a poster: venue, entrance, version and issue date; nothing personal.

    Refusals render this page too (not the generic error page), so a person learns what to do.
    """
    try:
        ref = posters.resolve_poster_token(token, utcnow())
    except posters.PosterTokenError as exc:
        return render_template("posters/verify.html", ref=None, message=exc.message, status=exc.status), exc.status
    return render_template("posters/verify.html", ref=ref, message=None, status=200), 200
