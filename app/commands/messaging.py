"""The outbox: inspect and retry messages."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from app.cli import transactional
from app.models import utcnow
from app.services import outbox


@click.group("outbox", help="The outbox: inspect and retry messages.")
def group() -> None:
    pass


@group.command("status", help="Count messages by status and channel.")
@transactional
def status_command() -> None:
    counts = outbox.status_counts()
    if not counts:
        click.echo("the outbox is empty")
        return
    click.echo(f"{'status':<12} {'channel':<8} {'count':>8}")
    for status, channel, count in counts:
        click.echo(f"{status:<12} {channel:<8} {count:>8}")


def _parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("expected an ISO date or date-time, e.g. 2026-11-20 or 2026-11-20T08:00Z") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@group.command("retry-failed", help="Queue failed messages again with their attempts reset.")
@click.option("--since", help="Only messages created at or after this UTC date or date-time.")
@click.option(
    "--unconfirmed",
    is_flag=True,
    help="Also re-queue messages in doubt (the gateway may already have them: they may arrive twice).",
)
@transactional
def retry_failed_command(since: str | None, unconfirmed: bool) -> None:
    count = outbox.retry_failed(utcnow(), since=_parse_since(since), include_unconfirmed=unconfirmed)
    click.echo(f"queued {count} message(s) again")


@group.command("show", help="Show one message (the recipient is masked).")
@click.argument("message_id", type=int)
@transactional
def show_command(message_id: int) -> None:
    for key, value in outbox.describe(message_id).items():
        click.echo(f"{key + ':':<20}{value}")
