"""Visitors' JSON API for a city app: check-in, check-out, my visits."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("visitors_api", __name__, url_prefix="/api/v1")
