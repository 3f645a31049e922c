"""The kiosk endpoints are described in the OpenAPI document, and every reference resolves."""

from __future__ import annotations

import json

from flask import Flask

from app.openapi import build_spec


def test_every_kiosk_route_is_documented_and_its_schemas_resolve(app: Flask) -> None:
    spec = build_spec("http://checkin.test")
    routes = {
        (rule.rule, method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("kiosk_api.")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert routes and routes <= documented
    text = json.dumps(spec)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}:
        assert ref in spec["components"]["schemas"], ref
