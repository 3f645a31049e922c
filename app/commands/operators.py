"""Venues, entrances, CSV import and poster batches."""

from __future__ import annotations

import click


@click.group("venues", help="Venues, entrances, CSV import and poster batches.")
def group() -> None:
    pass
