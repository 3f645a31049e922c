"""Prometheus metrics: defined once per process, exported at /metrics."""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

REQUESTS = Counter("checkin_http_requests_total", "HTTP requests", ["endpoint", "method", "status"])
LATENCY = Histogram("checkin_http_request_seconds", "HTTP request latency", ["endpoint"])
JOB_RUNS = Counter("checkin_job_runs_total", "Scheduler job runs", ["job", "outcome"])
MESSAGES = Counter("checkin_messages_total", "Outgoing messages by outcome", ["channel", "outcome"])


def init_metrics(app: Flask) -> None:
    @app.before_request
    def _start_timer() -> None:
        g._metrics_started = time.perf_counter()

    @app.after_request
    def _record(response: Response) -> Response:
        endpoint = request.endpoint or "unknown"
        started = g.pop("_metrics_started", None)
        if started is not None:
            LATENCY.labels(endpoint).observe(time.perf_counter() - started)
        REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
        return response


def render_metrics() -> Response:
    # Under gunicorn with several workers, PROMETHEUS_MULTIPROC_DIR makes every worker's numbers count.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)
