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
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA"
  pwfile="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb --pgdata="$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --no-instructions
  rm -f "$pwfile"
  printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    # a server on the socket only, so nothing connects before the database exists
    pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses=''" --wait --silent start
    psql --username="$POSTGRES_USER" --dbname=postgres --set=ON_ERROR_STOP=1 --no-psqlrc \
      --set=db="$POSTGRES_DB" --command='CREATE DATABASE :"db"'
    pg_ctl --pgdata="$PGDATA" --mode=fast --wait --silent stop
  fi
}

if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  initialise
fi
exec "$@"
