#!/usr/bin/env bash
# Start a throwaway PostgreSQL server from Debian's packages in a temporary directory, on loopback.
# Prints the SQLAlchemy URL of an empty database on stdout. Usage: .ci/start-postgres.sh [PORT]
set -euo pipefail
# Below the kernel's ephemeral range (32768-60999 on Linux): a client socket of the load benchmarks
# or the test suite can hold a port up there for a moment, and then the server cannot listen on it.
port="${1:-25432}"
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bindir" ]; then
  echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2
  exit 1
fi
dir=$(mktemp -d /tmp/checkin-pg.XXXXXX)
chown postgres:postgres "$dir"
run() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
run "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1
# fsync off: a test database need not survive a power cut, and it makes the suite much faster.
run "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" >/dev/null
run "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres checkin_test
echo "$dir" > /tmp/checkin-pg.last
echo "postgresql+psycopg://postgres@127.0.0.1:$port/checkin_test"
