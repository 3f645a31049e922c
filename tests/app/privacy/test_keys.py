"""Key rotation with re-encryption, and sealed mode (key separation between web tier and dispatcher)."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from nacl.public import PrivateKey

from app.models import MessageChannel, MessageKind, Person
from app.services import key_rotation, outbox
from app.services.personal_data import Keyring, PersonalDataError
from tests import factories
from tests.conftest import TEST_KEYS


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def test_reencrypt_moves_every_value_to_the_new_key_and_keeps_it_readable(
    app: Flask, db: Any, runner: FlaskCliRunner, now: datetime
) -> None:
    people = [factories.person(f"+7916555000{i}") for i in range(3)]
    outbox.enqueue(
        dedup_key="k1", channel=MessageChannel.SMS, kind=MessageKind.OTP, recipient="+79165550001", body="code", now=now
    )
    db.session.commit()
    ring = app.extensions["keyring"]
    assert {ring.key_id_of(p.phone_enc) for p in people} == {"t1"}
    original = ring
    app.extensions["keyring"] = Keyring.from_config(
        f"t2:{_b64(b'n' * 32)},{TEST_KEYS['DATA_ENCRYPTION_KEYS']}", TEST_KEYS["LOOKUP_HASH_KEY"]
    )
    try:
        result = runner.invoke(args=["keys", "reencrypt", "--batch-size", "2"])
        assert result.exit_code == 0, result.output
        assert "people.phone_enc: 3 rewritten" in result.output
        assert "outbox_messages.recipient_enc: 1 rewritten" in result.output
        new_ring = app.extensions["keyring"]
        for p in people:
            db.session.refresh(p)
            assert new_ring.key_id_of(p.phone_enc) == "t2"
        assert new_ring.decrypt(people[1].phone_enc, context="phone") == "+79165550001"
        again = runner.invoke(args=["keys", "reencrypt"])
        assert "done: 0 values rewritten" in again.output
    finally:
        app.extensions["keyring"] = original


def test_a_value_changed_while_its_batch_is_rewrapped_keeps_the_change(
    app: Flask, db: Any, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A visitor changes their number (written under the new key) after re-encryption read the old
    value and before it writes it back: the change must survive, not be overwritten by the old number."""
    person = factories.person("+79165550009")
    original = app.extensions["keyring"]
    new_ring = Keyring.from_config(
        f"t2:{_b64(b'n' * 32)},{TEST_KEYS['DATA_ENCRYPTION_KEYS']}", TEST_KEYS["LOOKUP_HASH_KEY"]
    )
    app.extensions["keyring"] = new_ring
    real_update = key_rotation.update

    def change_first(*args: Any, **kwargs: Any) -> Any:
        db.session.execute(
            real_update(Person)
            .where(Person.id == person.id)
            .values(phone_enc=new_ring.encrypt("+79165550010", context="phone"))
        )
        return real_update(*args, **kwargs)

    monkeypatch.setattr(key_rotation, "update", change_first)
    try:
        seen, rewritten, _last = key_rotation.rewrap_batch(key_rotation.ENCRYPTED_COLUMNS[0], 0, 100)
        db.session.expire_all()
        assert new_ring.decrypt(person.phone_enc, context="phone") == "+79165550010"
        assert (seen, rewritten) == (1, 0)
    finally:
        app.extensions["keyring"] = original


def test_sealed_mode_web_tier_can_store_but_not_read_contacts() -> None:
    private = PrivateKey.generate()
    web = Keyring.from_config(
        TEST_KEYS["DATA_ENCRYPTION_KEYS"],
        TEST_KEYS["LOOKUP_HASH_KEY"],
        contact_public_key=_b64(bytes(private.public_key)),
    )
    dispatcher = Keyring.from_config(
        TEST_KEYS["DATA_ENCRYPTION_KEYS"], TEST_KEYS["LOOKUP_HASH_KEY"], contact_private_key=_b64(bytes(private))
    )
    blob = web.encrypt("+79161234567", context="phone")
    assert blob[0] == 2 and b"79161234567" not in blob
    with pytest.raises(PersonalDataError, match="cannot read sealed contact data"):
        web.decrypt(blob, context="phone")
    assert dispatcher.decrypt(blob, context="phone") == "+79161234567"
    with pytest.raises(PersonalDataError, match="another column"):
        dispatcher.decrypt(web.encrypt("+79161234567", context="recipient"), context="phone")
    # Staff e-mails and service secrets stay under the symmetric key.
    assert web.encrypt("op@example.org", context="email")[0] == 1
    # The lookup hash is the same in both tiers, so the web tier still finds people.
    assert web.lookup_hash("+79161234567", context="phone") == dispatcher.lookup_hash("+79161234567", context="phone")


def test_mismatched_contact_key_pair_is_refused() -> None:
    one, two = PrivateKey.generate(), PrivateKey.generate()
    with pytest.raises(ValueError, match="does not belong"):
        Keyring.from_config(
            TEST_KEYS["DATA_ENCRYPTION_KEYS"],
            TEST_KEYS["LOOKUP_HASH_KEY"],
            contact_public_key=_b64(bytes(one.public_key)),
            contact_private_key=_b64(bytes(two)),
        )


def test_generate_contact_keypair_prints_a_working_pair(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["keys", "generate-contact-keypair"])
    values = dict(line.split("=", 1) for line in result.output.strip().splitlines())
    ring = Keyring.from_config(
        TEST_KEYS["DATA_ENCRYPTION_KEYS"],
        TEST_KEYS["LOOKUP_HASH_KEY"],
        values["CONTACT_PUBLIC_KEY"],
        values["CONTACT_PRIVATE_KEY"],
    )
    assert ring.decrypt(ring.encrypt("x", context="phone"), context="phone") == "x"
