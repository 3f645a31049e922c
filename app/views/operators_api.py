"""Venue operators' JSON API (organisations, venues, entrances, posters, kiosks)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("operators_api", __name__, url_prefix="/api/v1")
