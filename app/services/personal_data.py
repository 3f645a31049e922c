"""Encryption at rest and keyed lookup hashes for personal values (phone numbers, e-mails, subjects).

Ciphertext layout: version byte 0x01, key-id length, key id (ASCII), 12-byte nonce, AES-256-GCM
ciphertext with tag. The key id lets old rows stay readable after a key rotation; the lookup hash uses a
separate key so that finding a row never needs the decryption key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app

FORMAT_VERSION = 1


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

    @classmethod
    def from_config(cls, encryption_keys: str, lookup_key: str) -> Keyring:
        parsed = []
        for item in encryption_keys.split(","):
            kid, sep, raw = item.strip().partition(":")
            if not sep or not kid or len(kid) > 16 or not kid.isascii():
                raise ValueError("DATA_ENCRYPTION_KEYS entries look like 'kid:base64key'")
            parsed.append((kid, _decode_key(raw)))
        return cls(keys=tuple(parsed), lookup_key=_decode_key(lookup_key))

    @property
    def current_kid(self) -> str:
        return self.keys[0][0]

    def encrypt(self, value: str, *, context: str) -> bytes:
        """Encrypt a value. `context` (e.g. "phone") is bound as associated data, so a ciphertext
        copied into another column fails to decrypt."""
        kid, key = self.keys[0]
        nonce = os.urandom(12)
        sealed = AESGCM(key).encrypt(nonce, value.encode(), context.encode())
        kid_bytes = kid.encode()
        return bytes([FORMAT_VERSION, len(kid_bytes)]) + kid_bytes + nonce + sealed

    def decrypt(self, blob: bytes, *, context: str) -> str:
        if len(blob) < 2 or blob[0] != FORMAT_VERSION:
            raise PersonalDataError("unknown ciphertext format")
        kid_len = blob[1]
        kid = blob[2 : 2 + kid_len].decode(errors="replace")
        key = dict(self.keys).get(kid)
        if key is None:
            raise PersonalDataError(f"no key with id {kid!r} is configured")
        nonce = blob[2 + kid_len : 14 + kid_len]
        try:
            return AESGCM(key).decrypt(nonce, blob[14 + kid_len :], context.encode()).decode()
        except InvalidTag as exc:
            raise PersonalDataError("ciphertext failed authentication") from exc

    def key_id_of(self, blob: bytes) -> str:
        return blob[2 : 2 + blob[1]].decode(errors="replace")

    def lookup_hash(self, value: str, *, context: str) -> bytes:
        """A keyed hash of a normalised value: equal inputs match, the hash alone reveals nothing."""
        return hmac.new(self.lookup_key, f"{context}\x00{value}".encode(), hashlib.sha256).digest()


def keyring() -> Keyring:
    """The application's keyring (built from configuration in create_app)."""
    return current_app.extensions["keyring"]


def mask_phone(phone: str) -> str:
    """+79161234567 -> +7916***4567: enough to recognise, not enough to dial."""
    if len(phone) <= 7:
        return "*" * len(phone)
    return phone[:5] + "*" * (len(phone) - 9) + phone[-4:]


def secret_hash(token: str) -> bytes:
    """Hash of a high-entropy secret (device cookie, kiosk credential, pairing code) for storage."""
    return hashlib.sha256(token.encode()).digest()
