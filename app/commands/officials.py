"""Health officials: cases and lab-result imports."""

from __future__ import annotations

import click


@click.group("cases", help="Health officials: cases and lab-result imports.")
def group() -> None:
    pass
