"""Signed, versioned poster tokens: issue, reissue, resolve, and the Ed25519 keys that sign them.

A token is `format byte | varint key id | varint entrance id | varint version | 64-byte Ed25519
signature`, encoded as unpadded upper-case base32. Upper-case base32 uses only QR alphanumeric
characters, so the token part of the poster URL costs 5.5 bits per character in the QR code instead
of 8, and the code stays a small version. Verification needs only the public keys in the database.

- tokens: the token format, its encoding and the errors a scanned token can raise;
- keys: the Ed25519 signing keys (create, rotate, revoke) and signing with them;
- issuing: poster versions, their current tokens and the public addresses built from them;
- lookup: checking a scanned token against the database, as ORM objects or as plain values;
- printing: printable posters of an entrance or an organisation (drawn by app.services.poster_rendering).
"""

from app.services.posters.issuing import (
    current_token,
    current_version,
    issue_poster,
    poster_url,
    public_url,
    verify_url,
)
from app.services.posters.keys import KEY_CONTEXT, current_signing_key, revoke_signing_key, rotate_signing_key
from app.services.posters.lookup import (
    TARGET_QUERY,
    PosterRef,
    PosterTarget,
    check_poster_token,
    decode_checked,
    resolve_poster_token,
    target_from_row,
    target_params,
)
from app.services.posters.printing import (
    MEDIA_TYPES,
    organisation_poster_contents,
    parse_format,
    parse_page_size,
    poster_content,
    poster_filename,
    render_entrance_poster,
    render_organisation_posters,
)
from app.services.posters.tokens import (
    MAX_FIELD_VALUE,
    MAX_TOKEN_CHARS,
    MAX_VARINT_BYTES,
    SIGNATURE_BYTES,
    SIGNING_PREFIX,
    TOKEN_FORMAT,
    PosterReplaced,
    PosterTokenError,
    PosterTokenInvalid,
    PosterVenueClosed,
    TokenFields,
    decode_token,
    encode_payload,
)

__all__ = [
    "KEY_CONTEXT",
    "MAX_FIELD_VALUE",
    "MAX_TOKEN_CHARS",
    "MAX_VARINT_BYTES",
    "MEDIA_TYPES",
    "SIGNATURE_BYTES",
    "SIGNING_PREFIX",
    "TARGET_QUERY",
    "TOKEN_FORMAT",
    "PosterRef",
    "PosterReplaced",
    "PosterTarget",
    "PosterTokenError",
    "PosterTokenInvalid",
    "PosterVenueClosed",
    "TokenFields",
    "check_poster_token",
    "current_signing_key",
    "current_token",
    "current_version",
    "decode_checked",
    "decode_token",
    "encode_payload",
    "issue_poster",
    "organisation_poster_contents",
    "parse_format",
    "parse_page_size",
    "poster_content",
    "poster_filename",
    "poster_url",
    "public_url",
    "render_entrance_poster",
    "render_organisation_posters",
    "resolve_poster_token",
    "revoke_signing_key",
    "rotate_signing_key",
    "target_from_row",
    "target_params",
    "verify_url",
]
