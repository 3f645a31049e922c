"""Health officials: cases and lab-result imports."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app

from app.cli import transactional
from app.models import OfficialRole, utcnow


@click.group("cases", help="Health officials: cases and lab-result imports.")
def group() -> None:
    pass


@group.command("create-official", help="Create a health official's account (password from a prompt or env).")
@click.argument("email")
@click.option("--name", default="", help="Display name (default: the e-mail's local part).")
@click.option("--role", type=click.Choice([r.value for r in OfficialRole]), default=OfficialRole.OFFICIAL.value)
@click.option("--can-reveal", is_flag=True, help="May reveal full phone numbers (every reveal is audited).")
@click.option(
    "--password",
    envvar="OFFICIAL_PASSWORD",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="Read from OFFICIAL_PASSWORD or prompted; never pass it on the command line.",
)
@transactional
def create_official(email: str, name: str, role: str, can_reveal: bool, password: str) -> None:
    from app.services import officials

    official = officials.create_official(email, password, name, OfficialRole(role), can_reveal, now=utcnow())
    click.echo(f"official {official.id} created (role {role}{', can reveal' if can_reveal else ''})")


@group.command("import", help="Import lab results from a CSV file (idempotent on lab_reference).")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@transactional
def import_file(path: Path) -> None:
    from tqdm import tqdm

    from app.services import case_imports

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise click.ClickException(f"{path} is not UTF-8 text") from None
    total = max(text.count("\n") - 1, 0)
    with tqdm(total=total, unit="row", desc="import", disable=None) as bar:
        result = case_imports.import_cases(
            text,
            now=utcnow(),
            lead_days=int(current_app.config["MATCH_LEAD_DAYS"]),
            issuer=current_app.config["OIDC_ISSUER"],
            progress=bar.update,
        )
    for line, message in result.errors:
        click.echo(f"line {line}: {message}", err=True)
    click.echo(f"{result.created} recorded, {result.already_recorded} already recorded, {len(result.errors)} errors")
