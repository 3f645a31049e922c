"""Visitors: check-in rules from the command line."""

from __future__ import annotations

import click


@click.group("visitors", help="Visitors: check-in rules from the command line.")
def group() -> None:
    pass
