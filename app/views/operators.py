"""Venue operators' pages: sign-up, venues, posters, kiosks and the occupancy dashboard."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("operators", __name__, url_prefix="/operator")
