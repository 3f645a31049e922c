"""Kiosk enrolment and devices: `checkin kiosks pair|list|revoke`."""

from __future__ import annotations

import click

from app.cli import transactional
from app.models import utcnow
from app.services import kiosk_sync, kiosks


@click.group("kiosks", help="Kiosk enrolment and devices.")
def group() -> None:
    pass


@group.command("pair", help="Print a one-time pairing code (valid 24 h) for a kiosk at ENTRANCE_ID.")
@click.argument("entrance_id", type=int)
@transactional
def pair(entrance_id: int) -> None:
    entrance, venue = kiosk_sync.pairing_entrance(entrance_id)
    code = kiosks.create_pairing_code(entrance.id, utcnow())
    click.echo(f"Pairing code for {venue.name} — {entrance.name}: {code}")
    click.echo(f"Valid for {int(kiosks.PAIRING_CODE_TTL.total_seconds() // 3600)} hours, once.")


@group.command("list", help="List enrolled kiosks with their entrance, last contact and status.")
@transactional
def list_kiosks() -> None:
    rows = kiosk_sync.all_kiosks()
    if not rows:
        click.echo("No kiosks enrolled.")
        return
    for kiosk, entrance, venue in rows:
        state = f"revoked {kiosk.revoked_at:%Y-%m-%d %H:%M}Z" if kiosk.revoked_at else "active"
        seen = f"{kiosk.last_seen_at:%Y-%m-%d %H:%M:%S}Z" if kiosk.last_seen_at else "never"
        click.echo(f"{kiosk.id}\t{venue.name} — {entrance.name}\t{state}\tlast seen {seen}\t{kiosk.last_status or ''}")


@group.command("revoke", help="Revoke kiosk ID: its credential stops working at once.")
@click.argument("kiosk_id", type=int)
@transactional
def revoke(kiosk_id: int) -> None:
    kiosk = kiosk_sync.revoke(kiosk_id, utcnow())
    click.echo(f"Kiosk {kiosk.id} revoked at {kiosk.revoked_at:%Y-%m-%d %H:%M:%S}Z.")
