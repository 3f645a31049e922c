"""OpenAPI paths and schemas of the visitors endpoints."""

from typing import Any


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json_body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


BAD_INPUT = _error("The input is not valid; `error` says why in a sentence, `field` names the field.")
NOT_JSON = _error("The body was not sent as application/json.")
UNAUTHORIZED = _error("No device token, an unknown one, or a device that was signed out.")

PATHS: dict[str, Any] = {
    "/api/v1/visitors/code": {
        "post": {
            "tags": ["visitors"],
            "summary": "Send a one-time sign-in code by SMS",
            "description": "The same answer for every valid number, known or not. Limited per number, per "
            "address and per device: the app's `device_id` if it sends one, else the session cookie.",
            "requestBody": _json_body("CodeRequest"),
            "responses": {
                "202": _ok("A code is on its way.", "CodeRequested"),
                "400": BAD_INPUT,
                "415": NOT_JSON,
                "429": _error("Too many codes for this number, from this address or this device in the last hour."),
            },
        }
    },
    "/api/v1/visitors/code/confirm": {
        "post": {
            "tags": ["visitors"],
            "summary": "Confirm the code and get a device token",
            "requestBody": _json_body("CodeConfirm"),
            "responses": {
                "200": _ok("Signed in.", "DeviceToken"),
                "400": _error("Wrong, expired, used or locked code (each wrong guess counts)."),
                "404": _error("Unknown or expired request id."),
                "415": NOT_JSON,
            },
        }
    },
    "/api/v1/checkins": {
        "post": {
            "tags": ["visitors"],
            "summary": "Check in with a scanned poster or kiosk screen",
            "description": "A repeat check-in at the venue of the open visit continues it (200); a check-in "
            "elsewhere ends the open visit and creates a new one (201). A kiosk's code checks in at the kiosk's "
            "entrance.",
            "security": [{"bearer": []}],
            "requestBody": _json_body("CheckinRequest"),
            "responses": {
                "201": _ok("A new visit.", "CheckinResult"),
                "200": _ok("The open visit continues.", "CheckinResult"),
                "400": BAD_INPUT,
                "401": UNAUTHORIZED,
                "410": _error("The poster was replaced, the venue is closed, or the kiosk's code has changed."),
                "415": NOT_JSON,
            },
        }
    },
    "/api/v1/checkins/current/checkout": {
        "post": {
            "tags": ["visitors"],
            "summary": "Check out of the open visit",
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {
                "200": {
                    "description": "Checked out.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"checkin": {"$ref": "#/components/schemas/Visit"}},
                            }
                        }
                    },
                },
                "401": UNAUTHORIZED,
                "404": _error("No open visit."),
                "415": NOT_JSON,
            },
        }
    },
    "/api/v1/me/visits": {
        "get": {
            "tags": ["visitors"],
            "summary": "My visits within the retention period",
            "security": [{"bearer": []}],
            "responses": {"200": _ok("Newest first.", "VisitList"), "401": UNAUTHORIZED},
        }
    },
}

SCHEMAS: dict[str, Any] = {
    "CodeRequest": {
        "type": "object",
        "required": ["phone"],
        "properties": {
            "phone": {"type": "string", "maxLength": 32, "example": "+7 916 123-45-67"},
            "lang": {"type": "string", "enum": ["ru", "en"], "default": "ru"},
            "device_id": {
                "type": "string",
                "pattern": "^[A-Za-z0-9._:-]{8,128}$",
                "description": "The app installation's own stable id; code requests are counted per device.",
            },
        },
    },
    "CodeRequested": {
        "type": "object",
        "properties": {
            "request_id": {"type": "string"},
            "sent_to": {"type": "string", "example": "+7916***4567"},
            "expires_in": {"type": "integer", "description": "seconds"},
        },
    },
    "CodeConfirm": {
        "type": "object",
        "required": ["request_id", "code"],
        "properties": {"request_id": {"type": "string"}, "code": {"type": "string", "pattern": "^[0-9]{6}$"}},
    },
    "DeviceToken": {
        "type": "object",
        "properties": {"device_token": {"type": "string"}, "expires_in_days": {"type": "integer"}},
    },
    "CheckinRequest": {
        "type": "object",
        "description": "Exactly one of poster_token and kiosk_code.",
        "properties": {
            "poster_token": {"type": "string", "maxLength": 160, "description": "the text after /p/ in a poster's QR"},
            "kiosk_code": {
                "type": "string",
                "maxLength": 64,
                "description": "the text after /k/ in a kiosk's rotating on-screen QR; valid for seconds",
            },
            "party_size": {"type": "integer", "minimum": 1, "maximum": 50, "default": 1},
            "companion_phones": {"type": "array", "items": {"type": "string"}, "maxItems": 49},
        },
    },
    "Visit": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "venue": {"type": "object", "properties": {"name": {"type": "string"}, "short_code": {"type": "string"}}},
            "party_size": {"type": "integer"},
            "source": {"type": "string"},
            "checked_in_at": {"type": "string", "format": "date-time"},
            "planned_checkout_at": {"type": "string", "format": "date-time"},
            "checked_out_at": {"type": "string", "format": "date-time", "nullable": True},
            "checkout_reason": {"type": "string", "nullable": True},
            "deleted_after": {"type": "string", "format": "date-time"},
        },
    },
    "CheckinResult": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["created", "continued"]},
            "checkin": {"$ref": "#/components/schemas/Visit"},
            "ended": {"allOf": [{"$ref": "#/components/schemas/Visit"}], "nullable": True},
        },
    },
    "VisitList": {
        "type": "object",
        "properties": {"visits": {"type": "array", "items": {"$ref": "#/components/schemas/Visit"}}},
    },
}
