"""Kiosk enrolment and devices."""

from __future__ import annotations

import click


@click.group("kiosks", help="Kiosk enrolment and devices.")
def group() -> None:
    pass
