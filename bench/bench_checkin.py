"""Check-in throughput: the JSON check-in endpoint under gunicorn, against a bare "hello" route.

Usage:
  .venv/bin/python bench/bench_checkin.py --rows 100000   # a new SQLite file in a temporary directory
  .venv/bin/python bench/bench_checkin.py --database-url "$(.ci/start-postgres.sh 25601)" --rows 100000,1000000
      # a database for each size, the check-in measured on them in alternating turns of one run
  .venv/bin/python bench/bench_checkin.py --database-url postgresql+psycopg://postgres@127.0.0.1:25433/postgres \
      --rows 1000000

Steps: generate the shared workload (../shared/bench/gen_workload.py), migrate an empty database,
bulk-load venues, people and visits (executemany; COPY on PostgreSQL), give BENCH_DEVICES people a
remembered device and every venue a poster, start gunicorn on loopback, and drive it with wrk (Debian
package) for the same duration against POST /api/v1/checkins with random (device, poster) pairs, against
a bare Flask app's /hello (one route, nothing else: the issue's yardstick) and against a /hello route
inside the full app (every request's hooks: rate limiter, metrics, security headers, unit of work), all
under the same gunicorn settings. Prints requests/s for each and the ratios, with the conditions.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
GEN = ROOT.parent / "shared" / "bench" / "gen_workload.py"
sys.path.insert(0, str(ROOT))
from bench.cpu_split import KINDS, cpu_seconds, per_request  # noqa: E402

BENCH_DEVICES = 2000

# The same route in both apps: only what surrounds it differs.
HELLO = """
@app.get("/hello")
def hello():
    return "hello"
"""
WSGI = "from app import create_app\napp = create_app()\n" + HELLO
BARE_WSGI = "from flask import Flask\napp = Flask(__name__)\n" + HELLO
# The floor under any Flask check-in on this machine: a bare Flask app that reads the same JSON body and
# writes one row with one statement (autocommit: a single round trip), through the driver itself. Whatever
# a check-in does beyond that (find the device, the poster and the open visit, apply the rules) costs more.
FLOOR_WSGI = """
import os
from flask import Flask, request
app = Flask(__name__)
URL = os.environ["DATABASE_URL"]
PLACEHOLDER = "%s" if URL.startswith("postgresql") else "?"
_conn = None


def connection():
    global _conn
    if _conn is None:  # one per worker, after gunicorn's fork
        if URL.startswith("postgresql"):
            import psycopg
            _conn = psycopg.connect(URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
        else:
            import sqlite3
            _conn = sqlite3.connect(URL.removeprefix("sqlite:///"), isolation_level=None, timeout=30)
            _conn.execute("PRAGMA synchronous=NORMAL")  # as the app's connections (app/extensions.py)
    return _conn


@app.post("/floor")
def floor():
    body = request.get_json()
    token = str(body["poster_token"])[:200]
    cursor = connection().cursor()
    cursor.execute(f"INSERT INTO bench_floor (token) VALUES ({PLACEHOLDER}) RETURNING id", (token,))
    return {"id": cursor.fetchone()[0], "status": "created"}, 201
"""

LUA = """
local devices = {%(devices)s}
local posters = {%(posters)s}
-- Each wrk thread has its own Lua state: seeded alike, the threads would send the same (device, poster)
-- pairs at the same moment, and every second request would wait on the first one's row lock.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end
function init(args)
  math.randomseed(os.time() * 100 + thread_number)
end
request = function()
  local d = devices[math.random(#devices)]
  local p = posters[math.random(#posters)]
  return wrk.format("POST", "/api/v1/checkins",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. d},
    '{"poster_token": "' .. p .. '"}')
end
"""


def floor_script(lua: str) -> str:
    return lua.replace('"/api/v1/checkins"', '"/floor"')


def env_for(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "APP_ENV": "production",
        "DATABASE_URL": url,
        "SECRET_KEY": "bench-secret",
        "DATA_ENCRYPTION_KEYS": "b1:" + base64.urlsafe_b64encode(b"b" * 32).decode(),
        "LOOKUP_HASH_KEY": base64.urlsafe_b64encode(b"l" * 32).decode(),
        "PUBLIC_BASE_URL": "http://127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }


def load(url: str, rows: int, workdir: Path) -> tuple[list[str], list[str], float]:
    """Migrate and bulk-load; returns (device tokens, poster tokens, seconds spent loading)."""
    os.environ.update(env_for(url))
    sys.path.insert(0, str(ROOT))
    from flask_migrate import upgrade
    from sqlalchemy import insert, text

    from app import create_app
    from app.extensions import db
    from app.models import Checkin, Entrance, Organisation, Person, Venue
    from app.services import posters, sign_in
    from app.services.personal_data import keyring

    now = datetime.now(UTC).replace(second=0, microsecond=0)
    data = workdir / "workload"
    visitors = max(20_000, rows // 10)
    subprocess.run(
        [
            sys.executable,
            str(GEN),
            str(data),
            "--checkins",
            str(rows),
            "--visitors",
            str(visitors),
            "--now",
            now.strftime("%Y-%m-%dT%H:%M:%S"),
        ],
        check=True,
    )
    app = create_app()
    started = time.perf_counter()
    with app.app_context():
        if url.startswith("postgresql"):
            with db.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        upgrade(directory=str(ROOT / "migrations"))
        org = Organisation(name="Bench")
        db.session.add(org)
        db.session.flush()
        venues = []
        with (data / "venues.csv").open() as f:
            for vid, code, name in csv.reader(f):
                venue = Venue(id=int(vid), organisation_id=org.id, name=name, short_code=f"{int(code):09d}")
                venue.entrances.append(Entrance(name="Main entrance"))
                venues.append(venue)
        db.session.add_all(venues)
        db.session.flush()
        ring = keyring()
        with (data / "visitors.csv").open() as f:
            people_rows = [
                {
                    "id": int(pid),
                    "phone_hash": ring.lookup_hash(phone, context="phone"),
                    "phone_enc": ring.encrypt(phone, context="phone"),
                    "preferred_language": "ru",
                    "timezone": "Europe/Moscow",
                    "created_at": now,
                }
                for pid, phone, _first, _last in csv.reader(f)
            ]
        db.session.execute(insert(Person), people_rows)
        entrance_of = {v.id: v.entrances[0].id for v in venues}
        with (data / "checkins.csv").open() as f:
            visit_rows = [
                (int(cid), int(pid), int(vid), entrance_of[int(vid)], t_in, t_out)
                for cid, pid, vid, t_in, t_out in csv.reader(f)
            ]
        db.session.commit()
        if url.startswith("postgresql"):
            raw = db.engine.raw_connection()
            try:
                with (
                    raw.cursor() as cur,
                    cur.copy(
                        "COPY checkins (id, person_id, venue_id, entrance_id, party_size, source, checked_in_at, "
                        "planned_checkout_at, checked_out_at, checkout_reason, created_at) FROM STDIN"
                    ) as copy,
                ):
                    for cid, pid, vid, eid, t_in, t_out in visit_rows:
                        copy.write_row((cid, pid, vid, eid, 1, "poster", t_in, t_out, t_out, "visitor", t_in))
                    del visit_rows
                raw.commit()
                with raw.cursor() as cur:
                    cur.execute("SELECT setval('checkins_id_seq', (SELECT max(id) FROM checkins))")
                    cur.execute("SELECT setval('people_id_seq', (SELECT max(id) FROM people))")
                raw.commit()
            finally:
                raw.close()
            # VACUUM as well as ANALYZE, as the README asks after a bulk load: otherwise autovacuum gets to
            # the freshly loaded table in the middle of a measurement and takes CPU from the server.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM (ANALYZE)"))
        else:
            chunk = 50_000
            for i in range(0, len(visit_rows), chunk):
                db.session.execute(
                    insert(Checkin),
                    [
                        {
                            "id": cid,
                            "person_id": pid,
                            "venue_id": vid,
                            "entrance_id": eid,
                            "party_size": 1,
                            "source": "poster",
                            "checked_in_at": datetime.fromisoformat(t_in),
                            "planned_checkout_at": datetime.fromisoformat(t_out),
                            "checked_out_at": datetime.fromisoformat(t_out),
                            "checkout_reason": "visitor",
                            "created_at": datetime.fromisoformat(t_in),
                        }
                        for cid, pid, vid, eid, t_in, t_out in visit_rows[i : i + chunk]
                    ],
                )
            db.session.commit()
            db.session.execute(text("ANALYZE"))
            db.session.commit()
        devices = []
        for pid in range(2, 2 + BENCH_DEVICES):
            devices.append(sign_in.remember_device(db.session.get(Person, pid), now))
        poster_tokens = [posters.issue_poster(v.entrances[0], now)[1] for v in db.session.query(Venue).all()]
        serial = "bigserial" if url.startswith("postgresql") else "integer"  # SQLite: the rowid
        db.session.execute(text(f"CREATE TABLE bench_floor (id {serial} PRIMARY KEY, token text NOT NULL)"))
        db.session.commit()
        db.engine.dispose()
    return devices, poster_tokens, time.perf_counter() - started


class Run(NamedTuple):
    per_second: float
    cpu: str  # CPU per request of the server's workers, PostgreSQL and wrk


def wrk(port: int, path: str, seconds: int, connections: int, script: Path | None) -> Run:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", str(script)]
    before, children, started = cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    out = subprocess.run([*cmd, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True).stdout
    elapsed, after = time.perf_counter() - started, cpu_seconds()
    finished = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, which has exited
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        print(f"  WARNING: {non2xx.group(1)} non-2xx responses on {path}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = rate * elapsed
    wrk_s = finished.ru_utime + finished.ru_stime - children.ru_utime - children.ru_stime
    cpu = per_request(before, after, requests, KINDS) + f", wrk {wrk_s / requests * 1e6:,.0f} us"
    return Run(rate, cpu)


def measure(
    args: argparse.Namespace, workdir: Path, script: Path, floor: Path, workers: int
) -> tuple[Run, Run, Run, Run]:
    """Measure (bare hello, the app's hello, check-in, the floor) under gunicorn with `workers`, each after a
    warm-up. The bare app's turn alternates with the full app's so that a drifting machine tilts neither."""
    bare_first = serve(args, workdir, "bare_wsgi", workers, [("/hello", None)])
    app_hello, checkin = serve(args, workdir, "bench_wsgi", workers, [("/hello", None), ("/api/v1/checkins", script)])
    bare_last = serve(args, workdir, "bare_wsgi", workers, [("/hello", None)])
    (one_write,) = serve(args, workdir, "floor_wsgi", workers, [("/floor", floor)])
    bare = Run((bare_first[0].per_second + bare_last[0].per_second) / 2, f"{bare_first[0].cpu} (first turn)")
    print(f"  bare hello, before and after the app: {bare_first[0].per_second:.0f} and {bare_last[0].per_second:.0f}/s")
    return bare, app_hello, checkin, one_write


def serve(
    args: argparse.Namespace,
    workdir: Path,
    module: str,
    workers: int,
    paths: list[tuple[str, Path | None]],
    url: str | None = None,
) -> list[Run]:
    """Start gunicorn on `module` (on the database `url`, default --database-url), warm each path up, then
    measure each in turn."""
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "--workers",
            str(workers),
            "--threads",
            str(args.threads),
            "--bind",
            f"127.0.0.1:{args.port}",
            "--chdir",
            str(workdir),
            "--pythonpath",
            str(ROOT),
            f"{module}:app",
        ],
        env=env_for(url or args.database_url),
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(3)
        for path, script in paths:
            wrk(args.port, path, 2, args.connections, script)  # warm-up
        return [wrk(args.port, path, args.seconds, args.connections, script) for path, script in paths]
    finally:
        server.terminate()
        server.wait(timeout=10)


def database_for(base_url: str, rows: int, workdir: Path) -> str:
    """A database of its own for each table size: a file beside the others, or one on the same server."""
    from tests.support.live import live_database_url

    return live_database_url(base_url, str(workdir), name=f"bench_checkin_{rows}")


def compare_sizes(args: argparse.Namespace, workdir: Path, sizes: list[int], workers: int) -> None:
    """The check-in at each table size, in alternating turns of one run (size A, size B, size A, size B...),
    between two turns of the bare hello: the ratio between sizes is then measured on one machine state."""
    scripts: dict[int, tuple[str, Path]] = {}
    for rows in sizes:
        url = database_for(args.database_url, rows, workdir)
        data = workdir / f"rows-{rows}"
        data.mkdir()
        devices, poster_tokens, load_s = load(url, rows, data)
        script = workdir / f"checkin-{rows}.lua"
        script.write_text(
            LUA
            % {
                "devices": ",".join(json.dumps(d) for d in devices),
                "posters": ",".join(json.dumps(p) for p in poster_tokens),
            }
        )
        scripts[rows] = (url, script)
        print(f"  {rows} visits loaded in {load_s:.0f} s", flush=True)
    bare_first = serve(args, workdir, "bare_wsgi", workers, [("/hello", None)])[0]
    rates: dict[int, list[Run]] = {rows: [] for rows in sizes}
    for _round in range(args.rounds):
        for rows in sizes:
            url, script = scripts[rows]
            rates[rows] += serve(args, workdir, "bench_wsgi", workers, [("/api/v1/checkins", script)], url=url)
    bare_last = serve(args, workdir, "bare_wsgi", workers, [("/hello", None)])[0]
    bare = (bare_first.per_second + bare_last.per_second) / 2
    first = sum(r.per_second for r in rates[sizes[0]]) / args.rounds
    print(
        f"workers={workers}: bare hello {bare_first.per_second:.0f} and {bare_last.per_second:.0f}/s "
        f"(before and after)",
        flush=True,
    )
    for rows in sizes:
        mean = sum(r.per_second for r in rates[rows]) / args.rounds
        turns = ", ".join(f"{r.per_second:.0f}" for r in rates[rows])
        print(
            f"  {rows:>9} visits: check-in {turns}/s, mean {mean:.0f}/s = {mean / first:.0%} of the rate at "
            f"{sizes[0]}, {mean / bare:.0%} of the bare hello; CPU per check-in (last turn): {rates[rows][-1].cpu}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="default: a new SQLite file in a temporary directory")
    parser.add_argument(
        "--rows",
        default="100000",
        help="visits pre-loaded; a list (100000,1000000) loads a database for each and measures the check-in "
        "on them in alternating turns of one run",
    )
    parser.add_argument("--rounds", type=int, default=2, help="turns at each size, with --rows as a list")
    parser.add_argument("--workers", default="2", help="gunicorn sync workers; a list (2,4) measures each in turn")
    parser.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker (1: sync workers)")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--port", type=int, default=8731)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    try:
        sizes = [int(r) for r in str(args.rows).split(",")]
    except ValueError:
        sys.exit(f"--rows takes whole numbers separated by commas, not {args.rows!r}")
    workdir = Path(tempfile.mkdtemp(prefix="bench-checkin-"))
    if not args.database_url:
        args.database_url = f"sqlite:///{workdir / 'bench.sqlite3'}"
    (workdir / "bench_wsgi.py").write_text(WSGI)
    (workdir / "bare_wsgi.py").write_text(BARE_WSGI)
    (workdir / "floor_wsgi.py").write_text(FLOOR_WSGI)
    backend = "postgresql" if args.database_url.startswith("postgresql") else "sqlite"
    conditions = (
        f"gunicorn threads={args.threads}, wrk -t2 -c{args.connections} -d{args.seconds}s on loopback, "
        f"{os.cpu_count()} CPUs shared by server, database and load generator"
    )
    if len(sizes) > 1:
        print(f"conditions: {backend}, sizes {sizes} in {args.rounds} alternating rounds, {conditions}", flush=True)
        for workers in (int(w) for w in str(args.workers).split(",")):
            compare_sizes(args, workdir, sizes, workers)
        shutil.rmtree(workdir, ignore_errors=True)
        return
    devices, poster_tokens, load_s = load(args.database_url, sizes[0], workdir)
    script = workdir / "checkin.lua"
    lua = LUA % {
        "devices": ",".join(json.dumps(d) for d in devices),
        "posters": ",".join(json.dumps(p) for p in poster_tokens),
    }
    script.write_text(lua)
    floor = workdir / "floor.lua"
    floor.write_text(floor_script(lua))
    print(
        f"conditions: {backend}, {sizes[0]} visits pre-loaded (loaded in {load_s:.0f} s), {conditions}, "
        f"{len(devices)} devices x {len(poster_tokens)} posters; each measured one after the other under the "
        f"same gunicorn settings"
    )
    for workers in (int(w) for w in str(args.workers).split(",")):
        bare, hello, checkin, one_write = measure(args, workdir, script, floor, workers)
        print(
            f"workers={workers}: check-in {checkin.per_second:6.0f} requests/s = "
            f"{checkin.per_second / bare.per_second:.0%} of a bare Flask hello ({bare.per_second:.0f}/s, the mean "
            f"of two turns), {checkin.per_second / hello.per_second:.0%} of the app's hello ({hello.per_second:.0f}/s)",
            flush=True,
        )
        print(
            f"  the floor, a bare Flask route writing one row in one statement: {one_write.per_second:.0f}/s = "
            f"{one_write.per_second / bare.per_second:.0%} of the bare hello; the check-in reaches "
            f"{checkin.per_second / one_write.per_second:.0%} of it",
            flush=True,
        )
        print(
            f"  CPU per bare hello: {bare.cpu}\n  CPU per app hello:  {hello.cpu}\n  CPU per check-in:   {checkin.cpu}"
            f"\n  CPU per floor write: {one_write.cpu}",
            flush=True,
        )
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
