"""Jobs of the health-official domain: matching new cases, policy approval."""

from __future__ import annotations

from app.jobs import Job

JOBS: list[Job] = []
