"""OpenAPI paths and schemas of the visitor's own account (app/views/me_api.py)."""

from typing import Any

from app.openapi.visitors import BAD_INPUT, NOT_JSON, UNAUTHORIZED, _error, _json_body, _ok

_EMPTY_BODY = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
_SECURITY = [{"bearer": []}]


def _op(summary: str, responses: dict[str, Any], body: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    operation: dict[str, Any] = {"tags": ["my account"], "summary": summary, "security": _SECURITY, **extra}
    if body is not None:
        operation["requestBody"] = body
        responses = {"415": NOT_JSON, **responses}
    operation["responses"] = {"401": UNAUTHORIZED, **responses}
    return operation


def _path_id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}}


PATHS: dict[str, Any] = {
    "/api/v1/me": {
        "get": _op(
            "My account: masked number, devices, Bluetooth key state, who accessed my data",
            {"200": _ok("The account.", "MyAccount")},
        )
    },
    "/api/v1/me/notices": {
        "get": _op(
            "My notices, newest first",
            {"200": _ok("The notices.", "NoticeList"), "400": BAD_INPUT},
            parameters=[
                {
                    "name": "lang",
                    "in": "query",
                    "required": False,
                    "description": "Language of `text` (default: the account's language).",
                    "schema": {"type": "string", "enum": ["ru", "en"]},
                }
            ],
        )
    },
    "/api/v1/me/notices/{notice_id}/read": {
        "post": _op(
            "Mark a notice read",
            {"200": _ok("Marked.", "NoticeResult"), "404": _error("No such notice among yours.")},
            _EMPTY_BODY,
            parameters=[_path_id("notice_id")],
        )
    },
    "/api/v1/me/visits/{checkin_id}/correct": {
        "post": _op(
            "Correct the times of one of my visits",
            {
                "200": _ok("Corrected (an open visit is closed at the new end).", "VisitResult"),
                "400": _error(
                    "Times without a UTC offset, in the future, longer than 24 hours, more than 24 hours from the"
                    " recorded start, before the retention period, or overlapping another of my visits."
                ),
                "404": _error("No such visit among yours."),
            },
            _json_body("VisitCorrection"),
            parameters=[_path_id("checkin_id")],
        )
    },
    "/api/v1/me/devices": {
        "get": _op("My signed-in devices", {"200": _ok("Newest first.", "DeviceList")}),
    },
    "/api/v1/me/devices/{device_id}/revoke": {
        "post": _op(
            "Sign a device out (its token stops working)",
            {"200": _ok("Signed out.", "DeviceResult"), "404": _error("No such device among yours.")},
            _EMPTY_BODY,
            parameters=[_path_id("device_id")],
        )
    },
    "/api/v1/me/bluetooth-key": {
        "post": _op(
            "Get this phone's Bluetooth check-in key",
            {
                "201": _ok("A new key (the first one, a replaced one, or one older than BLE_KEY_HOURS).", "BleKey"),
                "200": _ok("The current key, still young enough to use.", "BleKey"),
                "400": BAD_INPUT,
                "429": _error("More than 30 requests from this device in an hour."),
            },
            _json_body("BleKeyRequest"),
            description="The phone advertises tokens made with this key as docs/kiosk-protocols.md, section 3,"
            " specifies, and asks again at `replace_after`: the key id travels in clear, so a key that lived"
            " forever would let a listener follow the phone.",
        )
    },
    "/api/v1/me/bluetooth-key/revoke": {
        "post": _op(
            "Turn Bluetooth check-in off",
            {"200": _ok("Tokens observed from now on are refused.", "Revoked")},
            _EMPTY_BODY,
        )
    },
    "/api/v1/me/personal-code": {
        "get": _op(
            "My rotating personal code, for showing as a QR to a kiosk's scanner",
            {"200": _ok("The code of the current time step.", "PersonalCode")},
        )
    },
    "/api/v1/me/erase": {
        "post": _op(
            "Erase my data",
            {
                "200": _ok("Erased.", "Erased"),
                "400": _error('Without {"confirm": "erase my data"} nothing is erased.'),
                "409": _error("A health case about me is still being processed; try again in a day."),
            },
            _json_body("EraseRequest"),
        )
    },
}

_TIME = {"type": "string", "format": "date-time"}
_MAYBE_TIME = {"type": "string", "format": "date-time", "nullable": True}

SCHEMAS: dict[str, Any] = {
    "Device": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "this_device": {"type": "boolean"},
            "created_at": _TIME,
            "last_used_at": _MAYBE_TIME,
            "revoked_at": _MAYBE_TIME,
        },
    },
    "DeviceList": {
        "type": "object",
        "properties": {"devices": {"type": "array", "items": {"$ref": "#/components/schemas/Device"}}},
    },
    "DeviceResult": {"type": "object", "properties": {"device": {"$ref": "#/components/schemas/Device"}}},
    "MyAccount": {
        "type": "object",
        "properties": {
            "phone": {"type": "string", "nullable": True, "example": "+7916***4567"},
            "preferred_language": {"type": "string"},
            "retention_days": {"type": "integer"},
            "bluetooth_key_issued_at": _MAYBE_TIME,
            "devices": {"type": "array", "items": {"$ref": "#/components/schemas/Device"}},
            "data_access": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "at": _TIME,
                        "actor_kind": {"type": "string"},
                        "actor_id": {"type": "integer", "nullable": True},
                        "action": {"type": "string"},
                    },
                },
            },
        },
    },
    "Notice": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "kind": {"type": "string", "enum": ["exposure", "retraction"]},
            "risk": {"type": "string"},
            "text": {"type": "string"},
            "language": {"type": "string", "enum": ["ru", "en"]},
            "visit_id": {"type": "integer", "nullable": True},
            "created_at": _TIME,
            "read_at": _MAYBE_TIME,
            "retracted_at": _MAYBE_TIME,
        },
    },
    "NoticeList": {
        "type": "object",
        "properties": {"notices": {"type": "array", "items": {"$ref": "#/components/schemas/Notice"}}},
    },
    "NoticeResult": {"type": "object", "properties": {"notice": {"$ref": "#/components/schemas/Notice"}}},
    "VisitCorrection": {
        "type": "object",
        "required": ["checked_in_at", "checked_out_at"],
        "properties": {
            "checked_in_at": {**_TIME, "example": "2026-11-20T14:30:00+03:00"},
            "checked_out_at": {**_TIME, "example": "2026-11-20T15:10:00+03:00"},
        },
    },
    "VisitResult": {"type": "object", "properties": {"checkin": {"$ref": "#/components/schemas/Visit"}}},
    "BleKeyRequest": {
        "type": "object",
        "properties": {"replace": {"type": "boolean", "default": False, "description": "a new key even if young"}},
    },
    "BleKey": {
        "type": "object",
        "properties": {
            "key_id": {"type": "integer", "description": "travels in every token; not a person identifier"},
            "key": {"type": "string", "format": "byte", "description": "32 bytes, standard base64"},
            "issued_at": _TIME,
            "replace_after": _TIME,
            "service_uuid": {"type": "string"},
            "step_seconds": {"type": "integer"},
            "format_version": {"type": "integer"},
        },
    },
    "Revoked": {"type": "object", "properties": {"revoked": {"type": "integer"}}},
    "PersonalCode": {
        "type": "object",
        "properties": {
            "code": {"type": "string", "example": "P1000NPUCU5AFLVH5HKE"},
            "valid_from": _TIME,
            "next_at": _TIME,
            "step_seconds": {"type": "integer"},
        },
    },
    "EraseRequest": {
        "type": "object",
        "required": ["confirm"],
        "properties": {"confirm": {"type": "string", "enum": ["erase my data"]}},
    },
    "Erased": {
        "type": "object",
        "properties": {
            "erased": {"type": "boolean"},
            "case_record_kept": {
                "type": "boolean",
                "description": "true when a health case refers to the person: its record keeps the number",
            },
        },
    },
}
