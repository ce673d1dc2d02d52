#!/bin/sh
# The pgbackrest sidecar of the PostgreSQL pod (render/pitr.py). The renderer replaces each @...@ placeholder with a
# shell-quoted command of render/pgbackrest.py, so the commands here are exactly the builder's.
# Env: PGUSER (the server's superuser), PGBACKREST_* (the repositories' secrets).
set -eu

# During a restore's WAL replay the server rejects connections; stanza-create needs it up and writable.
until pg_isready @PG_ISREADY@ --quiet; do sleep 2; done

# Idempotent: on an existing stanza of this database it changes nothing. It fails while a repository is
# unreachable; retry rather than exit, since the TLS server below does not depend on it.
until @STANZA_CREATE@; do
  echo "pgbackrest-sidecar: stanza-create failed, retrying in 10 s" >&2
  sleep 10
done

# archive_timeout takes effect after a start only once the checkpointer is woken (see render/pgbackrest.py).
psql @PSQL@ --no-psqlrc --quiet --tuples-only --command='SELECT pg_reload_conf()' >/dev/null

echo "pgbackrest-sidecar: stanza ready, serving the backup Jobs" >&2
exec @SERVER@
