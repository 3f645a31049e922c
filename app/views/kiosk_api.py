"""The kiosk tablets' API: enrolment, check-in batches, heartbeats."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("kiosk_api", __name__, url_prefix="/api/v1/kiosk")
