#!/usr/bin/env bash
# Starts the PostgreSQL server the tests use and prints its connection URL (the tests read it from
# PEFTSHARP_TEST_POSTGRES; `eval "$(scripts/start-postgres.sh --export)"` sets it). Idempotent: installs Debian's
# `postgresql` only if no server binaries are there, creates its own cluster under /tmp (so it never touches a
# system cluster), listens on 127.0.0.1 only, and creates the test role (allowed to create databases: each test
# makes its own) once. Run as root (the server then runs as the `postgres` user) or as any other user.
set -euo pipefail
port=${PEFTSHARP_PG_PORT:-54329}
data=${PEFTSHARP_PG_DATA:-/tmp/peftsharp-pg/data}
sock=$(dirname "$data")
# A password no path or log line contains by chance: tests assert it shows up nowhere.
user=peftsharp password=pg-secret-5d1b7e database=peftsharp_test
url="postgres://${user}:${password}@127.0.0.1:${port}/${database}"

log() { echo "start-postgres: $*" >&2; }

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
if [ -z "$(bindir)" ]; then
  if [ "$(id -u)" -ne 0 ]; then log "PostgreSQL is not installed and installing it needs root"; exit 1; fi
  log "installing postgresql"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >&2
fi
bin=$(bindir)

# The server refuses to run as root: run it as `postgres` when we are root.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

mkdir -p "$sock"
[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$sock"
create_cluster() {
  log "creating a cluster in $data"
  rm -rf "$data"
  as_owner "$bin/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
}
start_server() {
  as_owner "$bin/pg_ctl" -D "$data" -w -t 60 -l "$sock/server.log" \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$sock -c max_connections=200 -c fsync=off" start >/dev/null
}
[ -s "$data/PG_VERSION" ] || create_cluster
if ! as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
  log "starting the server on 127.0.0.1:$port"
  # A scratch cluster (fsync off) that a killed machine left unusable is made anew rather than repaired.
  start_server || { log "the old cluster would not start ($(tail -1 "$sock/server.log" 2>/dev/null)); recreating it"; create_cluster; start_server; }
fi

psql_admin() { as_owner "$bin/psql" -h "$sock" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$user'")" != 1 ]; then
  psql_admin -c "CREATE ROLE $user LOGIN CREATEDB PASSWORD '$password'"
else
  psql_admin -c "ALTER ROLE $user PASSWORD '$password'"   # a cluster made by an older script had another one
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$database'")" != 1 ]; then
  psql_admin -c "CREATE DATABASE $database OWNER $user"
fi

if [ "${1:-}" = "--export" ]; then echo "export PEFTSHARP_TEST_POSTGRES='$url'"; else echo "$url"; fi
