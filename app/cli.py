"""Command line: `checkin ...` (or `flask --app app ...`). Thin commands over the same services."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext
from sqlalchemy import text
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from app.config import ConfigError
from app.errors import DomainError
from app.extensions import db
from app.jobs import all_jobs, run_job, run_scheduler, unit_of_work
from app.models import utcnow

log = logging.getLogger(__name__)


def transactional(func: Callable[..., Any]) -> Callable[..., Any]:
    """The command is one unit of work: committed at the end, rolled back on any error.

    Domain errors become a one-line message and exit status 1.
    """

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with unit_of_work():
                return func(*args, **kwargs)
        except DomainError as exc:
            raise click.ClickException(exc.message) from None

    return with_appcontext(wrapper)


def check_database() -> None:
    """Fail with one clear line when the database cannot be reached."""
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
        raise click.ClickException(f"database unreachable ({_safe_url()}): {reason}") from None


def _safe_url() -> str:
    return db.engine.url.render_as_string(hide_password=True)


@click.group("jobs", help="The scheduler process and its jobs.")
def jobs_group() -> None:
    pass


@jobs_group.command("run", help="Run the scheduler (one active process; others wait as standby).")
@with_appcontext
def jobs_run() -> None:
    check_database()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    # The scheduler pushes its own context per job; leave this command's context clean.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_scheduler(app)


@jobs_group.command("run-once", help="Run one job now and print what it did.")
@click.argument("name", type=click.Choice(sorted(all_jobs())))
@with_appcontext
def jobs_run_once(name: str) -> None:
    check_database()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    result = run_job(app, name)
    click.echo(f"{name}: " + ", ".join(f"{k}={v}" for k, v in result.items()))


@jobs_group.command("list", help="List the scheduled jobs.")
def jobs_list() -> None:
    for job in all_jobs().values():
        click.echo(f"{job.name}\t{job.trigger} {job.trigger_args}")


@click.group("demo", help="Demo data for trying the product.")
def demo_group() -> None:
    pass


@demo_group.command("load", help="Create the demo organisation, venues, official and kiosk (idempotent).")
@transactional
def demo_load() -> None:
    from app.services.demo import demo_logins, load_demo

    check_database()
    summary = load_demo(utcnow())
    click.echo("Demo data " + ("created." if summary.created else "already present."))
    for name, code, url in summary.venues:
        click.echo(f"  venue {code}  {name}")
        click.echo(f"      check-in page: {url}")
    for who, email, password in demo_logins():
        click.echo(f"  login ({who}): {email} / {password}")
    click.echo(f"  kiosk pairing code (valid 24 h): {summary.pairing_code}")


@click.command("dev", help="Run the web service and the jobs process together (Ctrl-C stops both).")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=5000, type=int)
@with_appcontext
def dev_command(host: str, port: int) -> None:
    check_database()
    env = {**os.environ, "APP_ENV": current_app.config["APP_ENV"], "LOG_FORMAT": "text"}
    bindir = os.path.dirname(sys.executable)
    web = subprocess.Popen(
        [
            os.path.join(bindir, "gunicorn"),
            "--bind",
            f"{host}:{port}",
            "--workers",
            "2",
            "--access-logfile",
            "-",
            "app.wsgi:app",
        ],
        env=env,
    )
    jobs = subprocess.Popen([os.path.join(bindir, "checkin"), "jobs", "run"], env=env)
    base = f"http://{host}:{port}"
    from app.services.demo import demo_logins

    click.echo("")
    click.echo("=" * 64)
    click.echo(f"  Service:        {base}/")
    click.echo(f"  Health:         {base}/healthz")
    click.echo(f"  Metrics:        {base}/metrics")
    click.echo(f"  Venue operators:  {base}/operator/login")
    click.echo(f"  Health officials: {base}/official/login")
    for who, email, password in demo_logins():
        click.echo(f"  Login ({who}): {email} / {password}")
    click.echo("  Check-in pages: the URLs printed above for each venue (or scan a poster from the operator pages).")
    click.echo("  SMS codes and notices are printed by the jobs process below (SMS_CHANNEL=log).")
    click.echo("  Ctrl-C stops the web service and the jobs process.")
    click.echo("=" * 64)
    try:
        while web.poll() is None and jobs.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for proc in (web, jobs):
            if proc.poll() is None:
                proc.terminate()
        for proc in (web, jobs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


@click.command("check-config", help="Validate configuration and database reachability, then exit.")
@with_appcontext
def check_config() -> None:
    check_database()
    click.echo(f"configuration ok; database reachable ({_safe_url()})")


def register_cli(app: Flask) -> None:
    app.cli.add_command(jobs_group)
    app.cli.add_command(demo_group)
    app.cli.add_command(dev_command)
    app.cli.add_command(check_config)
    app.cli.add_command(settings_doc)
    from app.commands import keys, kiosks, messaging, officials, operators, visitors

    for module in (operators, visitors, officials, messaging, kiosks, keys):
        app.cli.add_command(module.group)


def _create_app_for_cli() -> Flask:
    from app import create_app

    try:
        return create_app()
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)


def main() -> None:
    """Entry point of the `checkin` command."""
    cli = FlaskGroup(create_app=_create_app_for_cli, add_version_option=False, load_dotenv=False)
    try:
        cli.main(prog_name="checkin")
    except OperationalError as exc:
        click.echo(f"database error: {str(exc.orig).strip().splitlines()[0]}", err=True)
        sys.exit(2)


@click.command("settings-doc", help="Print the settings table for README.md, or write .env.example.")
@click.option("--env-example", is_flag=True, help="Print .env.example instead of the Markdown table.")
def settings_doc(env_example: bool) -> None:
    from app.config import SETTINGS

    if env_example:
        click.echo("# Copy to .env or export in your environment; see README.md for each setting.")
        for s in SETTINGS:
            click.echo(f"# {s.help}")
            click.echo(f"{s.name}={'' if s.default is None or s.secret else s.default}")
        return
    click.echo("| variable | default | meaning |")
    click.echo("| --- | --- | --- |")
    for s in SETTINGS:
        default = "(required outside development)" if s.default is None else f"`{s.default}`"
        click.echo(f"| `{s.name}` | {default} | {s.help} |")
