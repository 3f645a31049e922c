"""OpenAPI paths and schemas of the operators endpoints."""

from typing import Any

# Authenticated by the `session` cookie that POST /operator/session (or the web sign-in) sets.
_AUTH = "Needs the operator session cookie from POST /operator/session."
_JSON_ONLY = "Writes must be sent as `Content-Type: application/json` (415 otherwise)."


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _list_of(key: str, schema: str) -> dict[str, Any]:
    return {"type": "object", "properties": {key: {"type": "array", "items": _ref(schema)}}}


def _id_param(name: str, what: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}, "description": what}


_VENUE_ID = _id_param("venue_id", "venue id")
_ENTRANCE_ID = _id_param("entrance_id", "entrance or hall id")
_KIOSK_ID = _id_param("kiosk_id", "kiosk id")
_SIZE = {"name": "size", "in": "query", "schema": {"type": "string", "enum": ["A4", "A5"], "default": "A4"}}
_COMMON_ERRORS = {
    "401": _error("not signed in"),
    "404": _error("no such record in the operator's organisation"),
}
_WRITE_ERRORS = {**_COMMON_ERRORS, "400": _error("invalid input"), "415": _error("body is not JSON")}


def _op(summary: str, responses: dict[str, Any], description: str = "", **extra: Any) -> dict[str, Any]:
    text = f"{_AUTH} {description}".strip()
    responses = {"401": _error("not signed in"), **responses}
    return {"tags": ["operators"], "summary": summary, "description": text, "responses": responses, **extra}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


# Actions without parameters still take a JSON body: the JSON content type is the CSRF defence.
_EMPTY_BODY = _body({"type": "object", "description": "empty; any members are ignored"})

PATHS: dict[str, Any] = {
    "/api/v1/operator/session": {
        "post": {
            "tags": ["operators"],
            "summary": "Sign in as a venue operator (sets the session cookie). Limited to 10 per minute per address.",
            "description": _JSON_ONLY,
            "requestBody": _body(_ref("OperatorLogin")),
            "responses": {
                "200": _json(_ref("OperatorSession"), "signed in"),
                "401": _error("wrong e-mail or password"),
                "415": _error("body is not JSON"),
                "429": _error("too many attempts"),
            },
        },
        "delete": {
            "tags": ["operators"],
            "summary": "Sign out",
            "responses": {"204": {"description": "signed out (also when no one was signed in)"}},
        },
    },
    "/api/v1/operator/venues": {
        "get": _op(
            "List the organisation's venues",
            {"200": _json(_list_of("venues", "Venue"), "")},
            parameters=[{"name": "archived", "in": "query", "schema": {"type": "string", "enum": ["true"]}}],
        ),
        "post": _op(
            "Create a venue with its entrances",
            {"201": _json(_ref("Venue"), "created"), **_WRITE_ERRORS},
            description=_JSON_ONLY,
            requestBody=_body(_ref("VenueCreate")),
        ),
    },
    "/api/v1/operator/venues/{venue_id}": {
        "get": _op("One venue", {"200": _json(_ref("Venue"), ""), **_COMMON_ERRORS}, parameters=[_VENUE_ID]),
        "patch": _op(
            "Change some fields of a venue",
            {"200": _json(_ref("Venue"), "changed"), **_WRITE_ERRORS},
            parameters=[_VENUE_ID],
            description=_JSON_ONLY,
            requestBody=_body(_ref("VenueChange")),
        ),
    },
    "/api/v1/operator/venues/{venue_id}/archive": {
        "post": _op(
            "Archive a venue: its posters stop working and it leaves the lists",
            {"200": _json(_ref("Venue"), "archived"), **_WRITE_ERRORS},
            parameters=[_VENUE_ID],
            description=_JSON_ONLY + " The body is an empty object `{}`.",
            requestBody=_EMPTY_BODY,
        ),
    },
    "/api/v1/operator/venues/{venue_id}/stats": {
        "get": _op(
            "Check-ins per hour over the last 72 hours and people present now (counts only)",
            {"200": _json(_ref("VenueStats"), ""), **_COMMON_ERRORS},
            parameters=[_VENUE_ID],
        ),
    },
    "/api/v1/operator/venues/{venue_id}/entrances": {
        "post": _op(
            "Add an entrance or hall",
            {"201": _json(_ref("Entrance"), "created"), **_WRITE_ERRORS},
            parameters=[_VENUE_ID],
            description=_JSON_ONLY,
            requestBody=_body(_ref("EntranceCreate")),
        ),
    },
    "/api/v1/operator/entrances/{entrance_id}": {
        "patch": _op(
            "Rename an entrance or change its kind",
            {"200": _json(_ref("Entrance"), "changed"), **_WRITE_ERRORS},
            parameters=[_ENTRANCE_ID],
            description=_JSON_ONLY,
            requestBody=_body(_ref("EntranceCreate")),
        ),
    },
    "/api/v1/operator/entrances/{entrance_id}/archive": {
        "post": _op(
            "Close an entrance (a venue keeps at least one open)",
            {"200": _json(_ref("Entrance"), "closed"), **_WRITE_ERRORS},
            parameters=[_ENTRANCE_ID],
            description=_JSON_ONLY + " The body is an empty object `{}`.",
            requestBody=_EMPTY_BODY,
        ),
    },
    "/api/v1/operator/entrances/{entrance_id}/poster": {
        "get": _op(
            "Download the entrance's current poster (issued on first download)",
            {
                "200": {
                    "description": "the poster file",
                    "content": {
                        "application/pdf": {"schema": {"type": "string", "format": "binary"}},
                        "image/png": {"schema": {"type": "string", "format": "binary"}},
                        "image/svg+xml": {"schema": {"type": "string"}},
                    },
                },
                **_WRITE_ERRORS,
            },
            parameters=[
                _ENTRANCE_ID,
                {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["pdf", "png", "svg"]}},
                _SIZE,
            ],
        ),
    },
    "/api/v1/operator/entrances/{entrance_id}/poster/reissue": {
        "post": _op(
            "Issue a new poster version; the printed one stops working",
            {"201": _json(_ref("PosterIssued"), "issued"), **_WRITE_ERRORS},
            parameters=[_ENTRANCE_ID],
            description=_JSON_ONLY + " The body is an empty object `{}`.",
            requestBody=_EMPTY_BODY,
        ),
    },
    "/api/v1/operator/posters": {
        "get": _op(
            "All current posters of the organisation as one PDF or a ZIP of PDFs",
            {
                "200": {
                    "description": "the batch",
                    "content": {
                        "application/pdf": {"schema": {"type": "string", "format": "binary"}},
                        "application/zip": {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                **_WRITE_ERRORS,
            },
            parameters=[{"name": "format", "in": "query", "schema": {"type": "string", "enum": ["pdf", "zip"]}}, _SIZE],
        ),
    },
    "/api/v1/operator/entrances/{entrance_id}/pairing-codes": {
        "post": _op(
            "Create a one-time kiosk pairing code for the entrance (shown once, valid 24 hours)",
            {"201": _json(_ref("PairingCode"), "created"), **_WRITE_ERRORS},
            parameters=[_ENTRANCE_ID],
            description=_JSON_ONLY + " The body is an empty object `{}`.",
            requestBody=_EMPTY_BODY,
        ),
    },
    "/api/v1/operator/kiosks": {
        "get": _op(
            "Kiosks of the organisation's venues with their last contact",
            {"200": _json(_list_of("kiosks", "Kiosk"), "")},
        ),
    },
    "/api/v1/operator/kiosks/{kiosk_id}/revoke": {
        "post": _op(
            "Revoke a kiosk: its credential stops working at once",
            {"200": _json(_ref("Kiosk"), "revoked"), **_WRITE_ERRORS},
            parameters=[_KIOSK_ID],
            description=_JSON_ONLY + " The body is an empty object `{}`.",
            requestBody=_EMPTY_BODY,
        ),
    },
}

_VENUE_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "maxLength": 200, "description": "any script"},
    "address": {"type": "string", "maxLength": 300},
    "kind": {"type": "string", "example": "cafe"},
    "timezone": {"type": "string", "example": "Europe/Moscow"},
    "default_stay_minutes": {"type": "integer", "minimum": 15, "maximum": 1440, "default": 60},
    "capacity": {"type": "integer", "minimum": 1, "nullable": True},
}

SCHEMAS: dict[str, Any] = {
    "OperatorLogin": {
        "type": "object",
        "required": ["email", "password"],
        "properties": {"email": {"type": "string"}, "password": {"type": "string"}},
    },
    "OperatorSession": {
        "type": "object",
        "properties": {
            "operator_id": {"type": "integer"},
            "organisation_id": {"type": "integer"},
            "role": {"type": "string", "enum": ["owner", "manager"]},
        },
    },
    "VenueCreate": {
        "type": "object",
        "required": ["name"],
        "properties": {
            **_VENUE_FIELDS,
            "entrances": {"type": "array", "items": {"type": "string"}, "default": ["Main entrance"]},
        },
    },
    "VenueChange": {"type": "object", "properties": _VENUE_FIELDS},
    "Venue": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            **_VENUE_FIELDS,
            "short_code": {"type": "string", "pattern": "^[1-9][0-9]{8}$"},
            "archived": {"type": "boolean"},
            "entrances": {"type": "array", "items": _ref("Entrance")},
        },
    },
    "EntranceCreate": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 200},
            "kind": {"type": "string", "enum": ["entrance", "hall"]},
        },
    },
    "Entrance": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "kind": {"type": "string", "enum": ["entrance", "hall"]},
            "archived": {"type": "boolean"},
            "poster_version": {"type": "integer", "nullable": True},
            "poster_issued_at": {"type": "string", "format": "date-time", "nullable": True},
        },
    },
    "PosterIssued": {
        "type": "object",
        "properties": {
            "version": {"type": "integer"},
            "issued_at": {"type": "string", "format": "date-time"},
            "url": {"type": "string", "description": "the check-in address printed in the QR code"},
            "verify_url": {"type": "string", "description": "public page telling anyone if the poster is genuine"},
        },
    },
    "VenueStats": {
        "type": "object",
        "properties": {
            "present": {"type": "integer"},
            "capacity": {"type": "integer", "nullable": True},
            "hourly": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "starts_at": {"type": "string", "format": "date-time"},
                        "checkins": {"type": "integer"},
                    },
                },
            },
        },
    },
    "PairingCode": {
        "type": "object",
        "properties": {
            "code": {"type": "string", "example": "1234-5678-9012"},
            "expires_at": {"type": "string", "format": "date-time"},
        },
    },
    "Kiosk": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "venue_id": {"type": "integer"},
            "entrance_id": {"type": "integer"},
            "enrolled_at": {"type": "string", "format": "date-time"},
            "last_seen_at": {"type": "string", "format": "date-time", "nullable": True},
            "last_status": {"type": "string", "nullable": True},
            "revoked": {"type": "boolean"},
        },
    },
}
