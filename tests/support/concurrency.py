"""Run pieces of work at the same moment, each on a thread of its own, for tests of real races."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any

from flask import Flask


def run_together(work: Sequence[Callable[[], Any]], timeout: float = 120.0) -> list[Any]:
    """Start every callable on its own thread, released together by a barrier; wait for all of them.

    Returns, in the order given, each callable's result or the exception it raised (an assertion in a
    thread would otherwise be lost). A thread still running after `timeout` seconds fails the test.
    """
    outcomes: list[Any] = [None] * len(work)
    start = threading.Barrier(len(work))

    def run(index: int, job: Callable[[], Any]) -> None:
        try:
            start.wait(10)
            outcomes[index] = job()
        except BaseException as exc:  # handed to the caller
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i, job), daemon=True) for i, job in enumerate(work)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    stuck = [t for t in threads if t.is_alive()]
    assert not stuck, f"{len(stuck)} of {len(threads)} threads still running after {timeout} s"
    return outcomes


def errors(outcomes: Sequence[Any]) -> list[BaseException]:
    return [o for o in outcomes if isinstance(o, BaseException)]


def run_in_app_together(app: Flask, work: Sequence[Callable[[], Any]], timeout: float = 120.0) -> list[Any]:
    """run_together, each callable in an app context of its own (its own session and connection),
    committed when it returns; results or errors, in the order given."""
    from app.extensions import db

    def in_context(job: Callable[[], Any]) -> Any:
        with app.app_context():
            try:
                result = job()
                db.session.commit()
                return result
            finally:
                db.session.remove()

    return run_together([functools.partial(in_context, job) for job in work], timeout)
