"""Endpoints the SMS gateway calls: incoming messages and delivery reports."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("gateway", __name__, url_prefix="/gateway")
