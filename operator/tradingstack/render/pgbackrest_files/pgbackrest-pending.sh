#!/bin/sh
# Runs before Patroni in a member's container when pitr is on (render/pitr.py), then runs the command it is given.
# archive_mode is `on`: a standby never archives the WAL it receives, so the segments a leader finished but had
# not shipped when it was lost reach the repository from nowhere else, and a restore across them would fail. The
# member's data volume comes back with it (a killed container, a deleted pod): push what its server had marked
# ready before Patroni starts it, since as a replica its archiver would not run. The renderer fills in the
# builder's shell-quoted archive-push command below.
# Usage: pgbackrest-pending.sh PGDATA COMMAND...
set -u
pgdata=$1
shift

for ready in "$pgdata"/pg_wal/archive_status/*.ready; do
  [ -e "$ready" ] || continue
  name=${ready##*/}
  name=${name%.ready}
  if @ARCHIVE_PUSH@ "$pgdata/pg_wal/$name"; then
    mv -f "$ready" "${ready%.ready}.done"
    echo "pgbackrest-pending: archived $name" >&2
  else
    # The repository is unreachable: start anyway, a member must not wait for it. If this member leads again,
    # its server's archiver retries the rest.
    echo "pgbackrest-pending: $name not archived, starting without it" >&2
    break
  fi
done

exec "$@"
