"""OpenAPI paths and schemas of the kiosks endpoints."""

from typing import Any

PATHS: dict[str, Any] = {}
SCHEMAS: dict[str, Any] = {}
