"""The OpenAPI description, assembled from one module per domain (each exposes PATHS and SCHEMAS)."""

from __future__ import annotations

import importlib
from typing import Any

DOMAINS = ("operators", "visitors", "kiosks", "officials", "gateway")


def build_spec(server_url: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error", "status"],
            "properties": {"error": {"type": "string"}, "status": {"type": "integer"}, "field": {"type": "string"}},
        }
    }
    for domain in DOMAINS:
        module = importlib.import_module(f"app.openapi.{domain}")
        paths.update(module.PATHS)
        schemas.update(module.SCHEMAS)
    return {
        "openapi": "3.0.3",
        "info": {"title": "Venue check-in API", "version": "1"},
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }
