"""Health officials' pages: cases, exposures, approval, stop switch, dashboard."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("officials", __name__, url_prefix="/official")
