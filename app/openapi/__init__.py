"""The OpenAPI description, assembled from one module per domain (each exposes PATHS and SCHEMAS)."""

from __future__ import annotations

import importlib
from typing import Any

DOMAINS = ("operators", "visitors", "me", "kiosks", "officials", "gateway")


def build_spec(server_url: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error", "status"],
            "properties": {
                "error": {
                    "type": "string",
                    "description": "A sentence for a person: in English, or in Russian for a request whose "
                    "Accept-Language header prefers Russian.",
                },
                "status": {"type": "integer"},
                "field": {"type": "string", "description": "The request field at fault, if one is."},
            },
        }
    }
    for domain in DOMAINS:
        module = importlib.import_module(f"app.openapi.{domain}")
        paths.update(module.PATHS)
        schemas.update(module.SCHEMAS)
    _document_refused_bodies(paths)
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


# Every operation with a JSON body answers 400 when the body is not the JSON it expects (including JSON
# nested deeper than the parser goes: app/__init__.py, BoundedJSONProvider).
_REFUSED_BODY = {
    "description": "The body is not the expected JSON (malformed, nested too deeply, or not an object).",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _document_refused_bodies(paths: dict[str, Any]) -> None:
    for operations in paths.values():
        for operation in operations.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                operation["responses"].setdefault("400", _REFUSED_BODY)
