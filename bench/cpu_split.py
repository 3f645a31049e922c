"""Where the CPU went during a measurement: the server's workers and PostgreSQL's processes.

Linux only (reads /proc). Every living process on the machine is classed by its command line, so a
benchmark can say how many microseconds of each kind one request cost, and so which side bounds it.
(A load generator that has exited is counted by the caller, with resource.getrusage(RUSAGE_CHILDREN).)
"""

from __future__ import annotations

import os
from collections import Counter

KINDS = ("gunicorn", "postgres")


def cpu_seconds() -> Counter[str]:
    """CPU seconds (user + system) used so far by the living processes of each kind."""
    tick = os.sysconf("SC_CLK_TCK")
    totals: Counter[str] = Counter()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        program = cmdline.split(" ", 1)[0]
        # PostgreSQL's backends rename themselves ("postgres: user db 127.0.0.1(5432) idle");
        # gunicorn's workers run under the interpreter, with gunicorn's path as the first argument.
        kind = "postgres" if "postgres" in program else "gunicorn" if "gunicorn" in cmdline else None
        if kind is not None:
            totals[kind] += (int(fields[11]) + int(fields[12])) / tick
    return totals


def per_request(before: Counter[str], after: Counter[str], requests: float, kinds: tuple[str, ...]) -> str:
    """'gunicorn 812 us, postgres 1,190 us' per request between two readings."""
    return ", ".join(f"{k} {(after[k] - before[k]) / requests * 1e6:,.0f} us" for k in kinds)
