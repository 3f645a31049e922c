"""Visitors' pages: the poster check-in page, sign-in by SMS code or mos.ru, my visits."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("visitors", __name__)
