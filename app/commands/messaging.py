"""The outbox: inspect and retry messages."""

from __future__ import annotations

import click


@click.group("outbox", help="The outbox: inspect and retry messages.")
def group() -> None:
    pass
