"""WSGI entry point for gunicorn: `gunicorn app.wsgi:app`."""

import sys

from app import ConfigError, create_app

try:
    app = create_app()
except ConfigError as exc:
    print(f"configuration error: {exc}", file=sys.stderr)
    # Exit status 3 is gunicorn's "worker failed to boot": the master stops instead of respawning.
    sys.exit(3)
