"""The outbox dispatcher: sends committed messages through their channels."""

from __future__ import annotations

from app.jobs import Job

JOBS: list[Job] = []
