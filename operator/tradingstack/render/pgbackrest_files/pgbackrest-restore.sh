#!/bin/sh
# The restore init container of the PostgreSQL pod (render/pitr.py): on an empty data volume, restore PGDATA
# from the pgBackRest repository; the server started next replays the archived WAL (to the target time, if
# any) and promotes itself. The renderer fills in the builder's shell-quoted restore command below.
# Usage: pgbackrest-restore.sh PGDATA
set -eu
pgdata=$1
# Present from the start of a restore until it finished: a restore cut short is run again (with --delta, which
# keeps the files already restored), not taken for a database.
pending="$pgdata.pgbackrest-restore"

if [ -s "$pgdata/PG_VERSION" ] && [ ! -e "$pending" ]; then
  echo "pgbackrest-restore: PGDATA holds a database, nothing to restore" >&2
  exit 0
fi
mkdir -p "$pgdata"
chmod 700 "$pgdata"
: >"$pending"
@RESTORE@
rm -f "$pending"
echo "pgbackrest-restore: restored, the server recovers from the archive next" >&2
