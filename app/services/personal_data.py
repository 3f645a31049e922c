"""Encryption at rest and keyed lookup hashes for personal values (phone numbers, e-mails, subjects).

Ciphertext layout: version byte 0x01, key-id length, key id (ASCII), 12-byte nonce, AES-256-GCM
ciphertext with tag. The key id lets old rows stay readable after a key rotation; the lookup hash uses a
separate key so that finding a row never needs the decryption key.

Sealed mode (key separation): when CONTACT_PUBLIC_KEY is configured, visitors' contact data (phone
numbers, account subjects, message recipients) is sealed to that X25519 public key instead (layout:
version byte 0x02, then a libsodium sealed box binding nothing else). The web tier only needs the public
half: it can store a number it was just given, but cannot read any stored one. Only processes that also
hold CONTACT_PRIVATE_KEY (the notice dispatcher, the officials' deployment) can open them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app

FORMAT_VERSION = 1
SEALED_VERSION = 2
# Contact data of visitors: sealed in sealed mode. Staff e-mails and service secrets are not.
SEALED_CONTEXTS = frozenset({"phone", "oidc_subject", "recipient"})


class PersonalDataError(Exception):
    """A value could not be decrypted: unknown key id, tampered data or wrong key."""


def _decode_key(raw: str) -> bytes:
    key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    if len(key) != 32:
        raise ValueError("keys must be 32 bytes, base64-encoded")
    return key


@dataclass(frozen=True)
class Keyring:
    """The data keys (newest first) and the lookup-hash key, parsed from configuration."""

    keys: tuple[tuple[str, bytes], ...]
    lookup_key: bytes
    contact_public_key: bytes | None = None
    contact_private_key: bytes | None = None
    # Decryption ciphers by key id, built once: batch endpoints decrypt hundreds of values per request.
    _ciphers: dict[str, AESGCM] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ciphers", {kid: AESGCM(key) for kid, key in self.keys})

    @classmethod
    def from_config(
        cls,
        encryption_keys: str,
        lookup_key: str,
        contact_public_key: str = "",
        contact_private_key: str = "",
    ) -> Keyring:
        public = _decode_key(contact_public_key) if contact_public_key else None
        private = _decode_key(contact_private_key) if contact_private_key else None
        if private is not None:
            from nacl.public import PrivateKey

            derived = bytes(PrivateKey(private).public_key)
            if public is not None and derived != public:
                raise ValueError("CONTACT_PRIVATE_KEY does not belong to CONTACT_PUBLIC_KEY")
            public = derived
        parsed = []
        for item in encryption_keys.split(","):
            kid, sep, raw = item.strip().partition(":")
            if not sep or not kid or len(kid) > 16 or not kid.isascii():
                raise ValueError("DATA_ENCRYPTION_KEYS entries look like 'kid:base64key'")
            parsed.append((kid, _decode_key(raw)))
        return cls(
            keys=tuple(parsed),
            lookup_key=_decode_key(lookup_key),
            contact_public_key=public,
            contact_private_key=private,
        )

    @property
    def is_sealed_mode(self) -> bool:
        return self.contact_public_key is not None

    @property
    def can_open_sealed(self) -> bool:
        return self.contact_private_key is not None

    @property
    def current_kid(self) -> str:
        return self.keys[0][0]

    def encrypt(self, value: str, *, context: str) -> bytes:
        """Encrypt a value. `context` (e.g. "phone") is bound as associated data, so a ciphertext
        copied into another column fails to decrypt."""
        if self.contact_public_key is not None and context in SEALED_CONTEXTS:
            from nacl.public import PublicKey, SealedBox

            sealed_box = SealedBox(PublicKey(self.contact_public_key)).encrypt(f"{context}\x00{value}".encode())
            return bytes([SEALED_VERSION]) + sealed_box
        kid, key = self.keys[0]
        nonce = os.urandom(12)
        sealed = AESGCM(key).encrypt(nonce, value.encode(), context.encode())
        kid_bytes = kid.encode()
        return bytes([FORMAT_VERSION, len(kid_bytes)]) + kid_bytes + nonce + sealed

    def decrypt(self, blob: bytes, *, context: str) -> str:
        if blob[:1] == bytes([SEALED_VERSION]):
            return self._open_sealed(blob, context)
        if len(blob) < 2 or blob[0] != FORMAT_VERSION:
            raise PersonalDataError("unknown ciphertext format")
        kid_len = blob[1]
        kid = blob[2 : 2 + kid_len].decode(errors="replace")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise PersonalDataError(f"no key with id {kid!r} is configured")
        nonce = blob[2 + kid_len : 14 + kid_len]
        try:
            return cipher.decrypt(nonce, blob[14 + kid_len :], context.encode()).decode()
        except InvalidTag as exc:
            raise PersonalDataError("ciphertext failed authentication") from exc

    def _open_sealed(self, blob: bytes, context: str) -> str:
        if self.contact_private_key is None:
            raise PersonalDataError("this process holds no CONTACT_PRIVATE_KEY and cannot read sealed contact data")
        from nacl.exceptions import CryptoError
        from nacl.public import PrivateKey, SealedBox

        try:
            opened = SealedBox(PrivateKey(self.contact_private_key)).decrypt(blob[1:]).decode()
        except CryptoError as exc:
            raise PersonalDataError("sealed value failed authentication") from exc
        sealed_context, sep, value = opened.partition("\x00")
        if not sep or sealed_context != context:
            raise PersonalDataError("sealed value belongs to another column")
        return value

    def needs_rewrap(self, blob: bytes) -> bool:
        """True when a stored value is not under the current key (or not sealed while sealed mode is on)."""
        if blob[:1] == bytes([SEALED_VERSION]):
            return False
        return self.key_id_of(blob) != self.current_kid

    def key_id_of(self, blob: bytes) -> str:
        return blob[2 : 2 + blob[1]].decode(errors="replace")

    def lookup_hash(self, value: str, *, context: str) -> bytes:
        """A keyed hash of a normalised value: equal inputs match, the hash alone reveals nothing."""
        return hmac.digest(self.lookup_key, f"{context}\x00{value}".encode(), "sha256")


def keyring() -> Keyring:
    """The application's keyring (built from configuration in create_app)."""
    return current_app.extensions["keyring"]


# At least this many characters of a masked number are hidden, whatever its length.
MASK_HIDDEN_AT_LEAST = 3


def mask_phone(phone: str) -> str:
    """+79161234567 -> +7916***4567: enough to recognise, not enough to dial.

    Short numbers (some countries' mobiles have 5 to 7 digits after the country code) show fewer
    characters at each end, so that at least MASK_HIDDEN_AT_LEAST are always hidden; up to 7
    characters, none is shown."""
    if len(phone) <= 7:
        return "*" * len(phone)
    tail = 4 if len(phone) >= 12 else 2
    head = min(5, len(phone) - tail - MASK_HIDDEN_AT_LEAST)
    return phone[:head] + "*" * (len(phone) - head - tail) + phone[-tail:]


def secret_hash(token: str) -> bytes:
    """Hash of a high-entropy secret (device cookie, kiosk credential, pairing code) for storage."""
    return hashlib.sha256(token.encode()).digest()
