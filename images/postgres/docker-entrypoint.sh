#!/bin/sh
# Starts PostgreSQL on the environment contract of the official postgres images, which the rendered pod relies
# on (render/postgres.py): PGDATA, POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB. On an empty PGDATA it runs
# initdb (password authentication over TCP, trust on the local socket, as the official images do) and creates
# the database; then it execs the command (`postgres`), which becomes the container's main process.
set -eu

: "${PGDATA:?PGDATA must name the data directory}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"

initialise() {
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set to initialise a database}"
  # Built in a sibling directory and moved into place when complete: a start interrupted half-way (killed pod,
  # failed step) leaves no PGDATA that the next start would take for a finished one.
  staging="$PGDATA.initialising"
  rm -rf "$staging"
  pwfile="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb --pgdata="$staging" --username="$POSTGRES_USER" --pwfile="$pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --no-instructions
  rm -f "$pwfile"
  printf 'host all all all scram-sha-256\n' >>"$staging/pg_hba.conf"
  printf "listen_addresses = '*'\n" >>"$staging/postgresql.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    # a server on the socket only (in PGHOST's directory when set), so nothing connects before the database exists
    socket_dir="${PGHOST:-/var/run/postgresql}"
    pg_ctl --pgdata="$staging" --options="-c listen_addresses='' -c unix_socket_directories='$socket_dir'" \
      --wait --silent start
    echo 'CREATE DATABASE :"db";' | psql --username="$POSTGRES_USER" --dbname=postgres --no-psqlrc \
      --set=ON_ERROR_STOP=1 --set=db="$POSTGRES_DB" --quiet
    pg_ctl --pgdata="$staging" --mode=fast --wait --silent stop
  fi
  rm -rf "$PGDATA"
  mv "$staging" "$PGDATA"
}

if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  initialise
fi
exec "$@"
