"""Poster rendering speed: one A4 PDF, PNG, SVG, and a 1,000-poster batch as one PDF and as a ZIP.

Run from the repository root: `python -m bench.bench_posters [--batch 1000] [--repeat 30]`.
Targets: <= 50 ms per A4 PDF; 1,000 posters into one PDF in < 60 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib.metadata import version

from app.services.poster_rendering import (
    PosterContent,
    render_batch_zip,
    render_pdf,
    render_png,
    render_svg,
)

BASE_URL = "https://checkin.example.org/p/"


def sample_poster(index: int) -> PosterContent:
    """A realistic poster: ~80-character signed-token URL, Cyrillic names, a verify link."""
    token = f"{index:08d}Zm9vYmFyYmF6cXV4LTAxMjM0NTY3ODktQWJDZEVmR2hJaktsTW5P"
    return PosterContent(
        url=f"{BASE_URL}{token}",
        venue_name=f"Кафе «Пушкинъ» на Тверском бульваре, зал № {index}",
        entrance_name="Главный вход со стороны Тверского бульвара",
        short_code=f"{100000000 + index:09d}",
        sms_number="7377",
        verify_url=f"https://checkin.example.org/verify/{token}",
    )


def median_ms(action: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds, after one warm-up call that fills the font caches."""
    action()
    wall, cpu = [], []
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), time.process_time()
        action()
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - cpu_started) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def timed_seconds(action: Callable[[], bytes]) -> tuple[float, float, int]:
    """Wall and CPU seconds: CPU time stays meaningful when other processes share the cores."""
    started, cpu_started = time.perf_counter(), time.process_time()
    data = action()
    return time.perf_counter() - started, time.process_time() - cpu_started, len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=1000, help="posters in the batch runs")
    parser.add_argument("--repeat", type=int, default=30, help="samples per single-poster median")
    args = parser.parse_args()

    print(
        f"conditions: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.platform()}, reportlab {version('reportlab')}, qrcode {version('qrcode')}, "
        f"pillow {version('pillow')}; single process, single thread; "
        f"load average before the run {os.getloadavg()[0]:.2f} (other work on the machine inflates figures)"
    )
    one = sample_poster(1)
    singles: dict[str, Callable[[], object]] = {
        "A4 PDF, one poster": lambda: render_pdf([one]),
        "A5 PDF, one poster": lambda: render_pdf([one], "A5"),
        "PNG A4 150 dpi": lambda: render_png(one, dpi=150),
        "PNG A4 300 dpi": lambda: render_png(one, dpi=300),
        "SVG A4": lambda: render_svg(one),
    }
    for name, action in singles.items():
        wall, cpu = median_ms(action, args.repeat)
        print(f"{name:<22} median {wall:7.1f} ms wall, {cpu:7.1f} ms CPU  (n={args.repeat})")

    posters = [sample_poster(index) for index in range(args.batch)]
    runs: dict[str, Callable[[], bytes]] = {
        "one PDF": lambda: render_pdf(posters),
        "ZIP of PDFs": lambda: render_batch_zip(posters, formats=("pdf",)),
        "ZIP of SVGs": lambda: render_batch_zip(posters, formats=("svg",)),
        "ZIP of PNGs (150 dpi)": lambda: render_batch_zip(posters, formats=("png",)),
    }
    for name, action in runs.items():
        seconds, cpu_seconds, size = timed_seconds(action)
        print(
            f"batch of {args.batch}, {name:<22} {seconds:6.1f} s wall, {cpu_seconds:6.1f} s CPU  "
            f"({seconds / args.batch * 1000:5.1f} ms/poster, {size / 1e6:6.1f} MB)"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
