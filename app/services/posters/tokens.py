"""The poster token format: fields, varint and base32 encoding, and the errors a scanned token raises."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from functools import lru_cache

from app.errors import DomainError
from app.models import MAX_ROW_ID

TOKEN_FORMAT = 1
SIGNATURE_BYTES = 64
# Bound on what we even try to decode: real tokens are about 115 characters.
MAX_TOKEN_CHARS = 160
MAX_VARINT_BYTES = 5
MAX_FIELD_VALUE = MAX_ROW_ID  # ids and versions are INTEGER columns
# Domain separation: a signature made for a poster can never be replayed as anything else.
SIGNING_PREFIX = b"checkin-poster\x00"


class PosterTokenError(DomainError):
    """A scanned poster token that cannot be used for check-in."""

    status = 400
    default_message = "This QR code is not a valid poster of this service."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)


class PosterTokenInvalid(PosterTokenError):
    """Malformed, forged, altered, or signed by a revoked key."""


class PosterReplaced(PosterTokenError):
    status = 410
    default_message = "This poster has been replaced; please scan the current poster at the entrance."


class PosterVenueClosed(PosterTokenError):
    status = 410
    default_message = "This venue no longer takes check-ins with this poster."


@dataclass(frozen=True)
class TokenFields:
    key_id: int
    entrance_id: int
    version: int


def _varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varints are unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode one LEB128 varint; non-minimal encodings are refused so every token has one spelling."""
    value = 0
    for i in range(MAX_VARINT_BYTES):
        if pos + i >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise ValueError("non-minimal varint")
            if value > MAX_FIELD_VALUE:
                raise ValueError("value out of range")
            return value, pos + i + 1
    raise ValueError("varint too long")


def encode_payload(fields: TokenFields) -> bytes:
    return bytes([TOKEN_FORMAT]) + _varint(fields.key_id) + _varint(fields.entrance_id) + _varint(fields.version)


@lru_cache(maxsize=8192)
def decode_token(token: str) -> tuple[TokenFields, bytes, bytes]:
    """Split a token into (fields, signed payload, signature); ValueError when it is not well formed.

    Remembered (a pure function; only well-formed tokens are kept): Python's base32 costs about 0.1 ms
    a scan, and a busy venue's poster is scanned thousands of times a day."""
    if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii() or not token.isalnum():
        raise ValueError("not a token")
    # QR readers and people sometimes lower-case; base32 is case-insensitive by design.
    text = token.upper()
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base32") from exc
    if _b32(raw) != text:
        raise ValueError("non-canonical base32")
    if len(raw) < 1 + 3 + SIGNATURE_BYTES or raw[0] != TOKEN_FORMAT:
        raise ValueError("unknown token format")
    payload, signature = raw[:-SIGNATURE_BYTES], raw[-SIGNATURE_BYTES:]
    key_id, pos = _read_varint(payload, 1)
    entrance_id, pos = _read_varint(payload, pos)
    version, pos = _read_varint(payload, pos)
    if pos != len(payload):
        raise ValueError("trailing bytes")
    return TokenFields(key_id, entrance_id, version), payload, signature


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=")
