"""OpenAPI paths and schemas of the gateway endpoints."""

from typing import Any

_SECRET = {
    "name": "secret",
    "in": "query",
    "required": True,
    "schema": {"type": "string"},
    "description": "SMS_INBOUND_SECRET, appended by the gateway to our URLs",
}
_EMPTY = {"description": "Accepted; the body is empty so the gateway sends nothing back"}
_ERRORS = {
    "400": {"description": "Malformed request"},
    "403": {"description": "Wrong or missing secret"},
}


def _query(name: str, description: str, required: bool = True) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": {"type": "string"}, "description": description}


_DLR = {
    "summary": "Delivery report from Kannel (dlr-url)",
    "description": "Sets a message delivered, failed or sent by our reference. GET or POST (form) alike.",
    "parameters": [
        _SECRET,
        _query("ref", "our message reference, m<id>"),
        _query("type", "Kannel DLR type: 1 delivered, 2 undelivered, 4 buffered, 8 SMSC accepted, 16 SMSC refused"),
        _query("answer", "the SMSC's receipt text", required=False),
    ],
    "responses": {"200": _EMPTY, **_ERRORS, "404": {"description": "Unknown reference"}},
}
_INCOMING = {
    "summary": "Incoming SMS forwarded by Kannel (sms-service get-url)",
    "description": "Runs the visitor's SMS command (e.g. a venue code); the reply goes out through the outbox.",
    "parameters": [
        _SECRET,
        _query("from", "sender's phone number"),
        _query("to", "our short number", required=False),
        _query("text", "message text, UTF-8"),
        _query("id", "the gateway's message id, for de-duplication", required=False),
    ],
    "responses": {"200": _EMPTY, **_ERRORS},
}

PATHS: dict[str, Any] = {
    "/gateway/sms/dlr": {"get": _DLR, "post": _DLR},
    "/gateway/sms/incoming": {"get": _INCOMING, "post": _INCOMING},
}
SCHEMAS: dict[str, Any] = {}
