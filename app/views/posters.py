"""Public poster pages: is this poster genuine and current?"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("posters", __name__)
