"""Click command groups, one module per domain; registered on the app in app/cli.py."""
