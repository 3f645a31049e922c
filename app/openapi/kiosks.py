"""OpenAPI paths and schemas of the kiosks endpoints (the kiosk tablets' API, docs/kiosk-protocols.md)."""

from typing import Any

_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(ref: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


PATHS: dict[str, Any] = {
    "/api/v1/kiosk/enrol": {
        "post": {
            "tags": ["kiosks"],
            "summary": "Exchange a one-time pairing code for the kiosk's credential",
            "description": "The code (12 digits, from `checkin kiosks pair` or the operator pages) works once and "
            "for 24 hours. Refused attempts are rate-limited per address (10 a minute, 60 an hour).",
            "requestBody": {"required": True, **_json("KioskEnrolRequest")},
            "responses": {
                "201": {
                    "description": "Enrolled; the credential and secret are shown only now",
                    **_json("KioskEnrolment"),
                },
                "400": {"description": "Malformed, used or expired code, or the entrance is archived", **_ERROR},
                "404": {"description": "Unknown code", **_ERROR},
                "429": {"description": "Too many refused codes from this address", **_ERROR},
            },
        }
    },
    "/api/v1/kiosk/checkins": {
        "post": {
            "tags": ["kiosks"],
            "summary": "Upload a batch of check-ins read by the kiosk",
            "description": "Up to 500 items. Each is verified (personal code or Bluetooth token against the "
            "visitor's key, fresh at `observed_at`) and recorded at the kiosk's entrance. Every item gets its own "
            "verdict; `client_id` makes re-sending safe (`duplicate`). A 503 means: send the batch again later.",
            "security": [{"bearer": []}],
            "requestBody": {"required": True, **_json("KioskCheckinBatch")},
            "responses": {
                "200": {"description": "One result per item, in order", **_json("KioskCheckinResults")},
                "400": {"description": "Not a list, or more than 500 items", **_ERROR},
                "401": {"description": "Missing, unknown or revoked credential", **_ERROR},
                "503": {"description": "Concurrent writes for the same visitors; retry", **_ERROR},
            },
        }
    },
    "/api/v1/kiosk/heartbeat": {
        "post": {
            "tags": ["kiosks"],
            "summary": "Report the kiosk's state and read the server's clock",
            "security": [{"bearer": []}],
            "requestBody": {"required": True, **_json("KioskHeartbeat")},
            "responses": {
                "200": {"description": "Recorded", **_json("KioskServerTime")},
                "400": {"description": "A field has the wrong type", **_ERROR},
                "401": {"description": "Missing, unknown or revoked credential", **_ERROR},
            },
        }
    },
}

_TIME = {"type": "string", "format": "date-time"}

SCHEMAS: dict[str, Any] = {
    "KioskEnrolRequest": {
        "type": "object",
        "required": ["pairing_code"],
        "properties": {"pairing_code": {"type": "string", "example": "1234-5678-9012"}},
    },
    "KioskEnrolment": {
        "type": "object",
        "required": [
            "kiosk_id",
            "credential",
            "rotation_secret",
            "venue_name",
            "entrance_name",
            "checkin_base_url",
            "server_time",
        ],
        "properties": {
            "kiosk_id": {"type": "integer"},
            "credential": {"type": "string", "description": "Bearer credential for the other kiosk endpoints"},
            "rotation_secret": {"type": "string", "description": "base64url key of the on-screen rotating QR"},
            "venue_name": {"type": "string"},
            "entrance_name": {"type": "string"},
            "checkin_base_url": {"type": "string", "description": "The on-screen QR is {checkin_base_url}/k/{code}"},
            "server_time": _TIME,
        },
    },
    "KioskCheckinItem": {
        "type": "object",
        "required": ["client_id", "method", "token", "observed_at"],
        "properties": {
            "client_id": {"type": "string", "maxLength": 64, "description": "uuid4 made by the kiosk; dedup key"},
            "method": {"type": "string", "enum": ["kiosk_scanner", "ble"]},
            "token": {"type": "string", "maxLength": 64, "description": "Personal code (20 chars) or BLE token"},
            "observed_at": {**_TIME, "description": "When the kiosk read it, on the server's clock"},
            "clock_skew_s": {
                "type": "number",
                "description": "Present when the kiosk corrected observed_at by its measured skew; "
                "the server then allows one more time step",
            },
        },
    },
    "KioskCheckinBatch": {
        "type": "object",
        "required": ["items"],
        "properties": {
            "sent_at": _TIME,
            "items": {"type": "array", "maxItems": 500, "items": {"$ref": "#/components/schemas/KioskCheckinItem"}},
        },
    },
    "KioskCheckinResult": {
        "type": "object",
        "required": ["index", "client_id", "status"],
        "properties": {
            "index": {"type": "integer", "description": "Position of the item in the batch"},
            "client_id": {"type": "string", "nullable": True},
            "status": {
                "type": "string",
                "enum": ["accepted", "duplicate", "rejected", "retry"],
                "description": "accepted: a visit was created or continues; duplicate: recorded before; "
                "rejected: see reason; anything else: keep the item and send it again",
            },
            "reason": {"type": "string", "nullable": True},
        },
    },
    "KioskCheckinResults": {
        "type": "object",
        "required": ["server_time", "results"],
        "properties": {
            "server_time": _TIME,
            "results": {"type": "array", "items": {"$ref": "#/components/schemas/KioskCheckinResult"}},
        },
    },
    "KioskHeartbeat": {
        "type": "object",
        "properties": {
            "sent_at": _TIME,
            "queue_length": {"type": "integer", "minimum": 0},
            "ble_ok": {"type": "boolean"},
            "scanner_ok": {"type": "boolean"},
            "version": {"type": "string", "maxLength": 40},
        },
    },
    "KioskServerTime": {"type": "object", "required": ["server_time"], "properties": {"server_time": _TIME}},
}
