"""Data keys: re-encrypt stored personal data after a rotation, and make sealed-mode key pairs."""

from __future__ import annotations

import base64

import click
from flask.cli import with_appcontext
from tqdm import tqdm

from app.extensions import db


@click.group("keys", help="Data keys: rotation and sealed mode.")
def group() -> None:
    pass


@group.command("reencrypt", help="Re-encrypt every stored personal value under the newest data key.")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 10_000))
@with_appcontext
def reencrypt(batch_size: int) -> None:
    from app.cli import check_database
    from app.services.key_rotation import ENCRYPTED_COLUMNS, count_rows, rewrap_all
    from app.services.personal_data import keyring

    check_database()
    total = sum(count_rows(target) for target in ENCRYPTED_COLUMNS)
    db.session.rollback()
    click.echo(f"re-encrypting {total} values under key {keyring().current_kid!r} (safe while the service runs)")
    with tqdm(total=total, unit="value") as bar:
        results = list(rewrap_all(db.session.commit, batch_size, progress=lambda _label, seen: bar.update(seen)))
    for label, rewritten in results:
        if rewritten:
            click.echo(f"  {label}: {rewritten} rewritten")
    click.echo("done: " + str(sum(n for _, n in results)) + " values rewritten")


@group.command("generate-contact-keypair", help="Print a new key pair for sealed mode (CONTACT_*_KEY).")
def generate_contact_keypair() -> None:
    from nacl.public import PrivateKey

    private = PrivateKey.generate()
    click.echo("CONTACT_PUBLIC_KEY=" + base64.urlsafe_b64encode(bytes(private.public_key)).decode())
    click.echo("CONTACT_PRIVATE_KEY=" + base64.urlsafe_b64encode(bytes(private)).decode())
