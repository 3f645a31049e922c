"""Serves the OpenAPI description of the JSON API."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from app.openapi import build_spec

bp = Blueprint("api_docs", __name__)


@bp.get("/api/v1/openapi.json")
def openapi() -> Response:
    # Paths in the description are absolute (/api/v1/...), so the server is the site root.
    return jsonify(build_spec(current_app.config["PUBLIC_BASE_URL"]))
