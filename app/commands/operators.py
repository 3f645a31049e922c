"""Venues, entrances, CSV import and poster batches."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from tqdm import tqdm

from app.cli import transactional
from app.errors import NotFoundError
from app.extensions import db
from app.models import Organisation, utcnow
from app.services import posters, venue_imports


@click.group("venues", help="Venues, entrances, CSV import and poster batches.")
def group() -> None:
    pass


def _organisation(organisation_id: int) -> Organisation:
    organisation = db.session.get(Organisation, organisation_id)
    if organisation is None or organisation.archived_at is not None:
        raise NotFoundError(f"No organisation with id {organisation_id}.")
    return organisation


@group.command("import", help="Create venues from a CSV file; nothing is written if any row is bad.")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--organisation", "organisation_id", type=int, required=True, help="Organisation id.")
@click.option("--skip-bad-rows", is_flag=True, help="Import the good rows and list the bad ones.")
@transactional
def import_command(csv_file: Path, organisation_id: int, skip_bad_rows: bool) -> None:
    organisation = _organisation(organisation_id)
    try:
        text = csv_file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise click.ClickException(f"{csv_file} is not UTF-8 text; save the CSV as UTF-8.") from None
    bar: tqdm | None = None

    def start(total: int) -> None:
        nonlocal bar
        bar = tqdm(total=total, unit="venue", desc="importing", file=sys.stderr)

    try:
        result = venue_imports.import_venues(
            organisation.id,
            text,
            skip_bad_rows=skip_bad_rows,
            on_rows=start,
            progress=lambda n: bar.update(n) if bar is not None else None,
        )
    finally:
        if bar is not None:
            bar.close()
    for error in result.skipped:
        click.echo(f"skipped {error}", err=True)
    click.echo(f"imported {len(result.created)} venue(s) into {organisation.name!r}")


@group.command("posters", help="Render every current poster of an organisation into one PDF or a ZIP.")
@click.option("--organisation", "organisation_id", type=int, required=True, help="Organisation id.")
@click.option(
    "--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="FILE.pdf or FILE.zip"
)
@click.option("--size", type=click.Choice(["A4", "A5"]), default="A4", show_default=True)
@transactional
def posters_command(organisation_id: int, out: Path, size: str) -> None:
    archive = out.suffix.lower().lstrip(".")
    if archive not in {"pdf", "zip"}:
        raise click.ClickException("--out must end in .pdf or .zip")
    organisation = _organisation(organisation_id)
    with tqdm(unit="poster", desc="rendering", file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        data = posters.render_organisation_posters(
            organisation.id, archive, posters.parse_page_size(size), utcnow(), progress
        )
    # Written only after every poster rendered: a failure leaves no half-written file behind.
    tmp = out.with_name(out.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(out)
    click.echo(f"wrote {bar.total} poster(s) to {out} ({len(data) // 1024} KB)")


@group.command("rotate-poster-key", help="Start a new poster signing key; posters signed by the old one stay valid.")
@transactional
def rotate_poster_key_command() -> None:
    key = posters.rotate_signing_key(utcnow())
    click.echo(f"new poster signing key {key.kid} (id {key.id}); earlier keys retired")
