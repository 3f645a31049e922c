"""Helpers for posting forms through the Flask test client with their CSRF token."""

from __future__ import annotations

import re

_TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


def csrf_token(html: str) -> str:
    match = _TOKEN.search(html)
    if match is None:
        raise AssertionError("no csrf_token field in the page")
    return match.group(1) or match.group(2)
