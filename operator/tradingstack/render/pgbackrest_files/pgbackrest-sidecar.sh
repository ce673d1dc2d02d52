#!/bin/sh
# The pgbackrest sidecar of a PostgreSQL pod (render/pitr.py). The renderer replaces each @...@ placeholder with a
# shell-quoted command of render/pgbackrest.py, so the commands here are exactly the builder's.
# Env: PGUSER (the server's superuser), PGBACKREST_* (the repositories' secrets).
set -eu

# False while the server is down or rejects connections (a restore's WAL replay) as much as on a standby.
primary() {
  [ "$(psql @PSQL@ --no-psqlrc --quiet --tuples-only --no-align \
    --command='SELECT NOT pg_is_in_recovery()' 2>/dev/null)" = t ]
}

# stanza-create needs a running primary: the single server once it is up (after a restore, once recovery ended),
# a Patroni member once it leads. Meanwhile the TLS server below already serves: a backup Job reaching a replica
# or a server still recovering fails on pgBackRest's own primary check, and the next one runs.
(
  until primary; do sleep 5; done
  # Idempotent: on an existing stanza of this database it changes nothing. It fails while a repository is
  # unreachable: retry.
  until @STANZA_CREATE@; do
    echo "pgbackrest-sidecar: stanza-create failed, retrying in 10 s" >&2
    sleep 10
  done
  # archive_timeout takes effect after a start only once the checkpointer is woken (see render/pgbackrest.py).
  psql @PSQL@ --no-psqlrc --quiet --tuples-only --command='SELECT pg_reload_conf()' >/dev/null
  echo "pgbackrest-sidecar: stanza ready on this primary" >&2
) &

echo "pgbackrest-sidecar: serving the backup Jobs" >&2
exec @SERVER@
