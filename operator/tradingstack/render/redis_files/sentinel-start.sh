#!/bin/sh
# Starts one Sentinel. It monitors the master its peers currently report, so a restarted sentinel never
# resurrects the first master's address; only with no peer answering does it use the bootstrap master
# (Redis ordinal 0), which is what the Redis pods do too.
#
# Environment: SENTINEL_ANNOUNCE_HOST, SENTINEL_PORT, SENTINEL_DIR, REDIS_CONFIG_DIR, REDIS_SENTINELS,
# REDIS_MASTER_NAME, REDIS_BOOTSTRAP_MASTER (host:port), REDIS_PASSWORD, REDISCLI_AUTH,
# REDIS_SENTINEL_WAIT_SECONDS.
set -eu
. "$REDIS_CONFIG_DIR/redis-lib.sh"

view=$(sentinel_master)
master="${view% *}"
[ -n "$view" ] || master="${REDIS_BOOTSTRAP_MASTER%:*} ${REDIS_BOOTSTRAP_MASTER##*:}"
master_host="${master% *}"
master_port="${master#* }"

# Sentinel refuses a config whose master hostname does not resolve (its pod may not exist yet).
deadline=$(($(date +%s) + REDIS_SENTINEL_WAIT_SECONDS))
until getent hosts "$master_host" >/dev/null 2>&1 || [ "$(date +%s)" -ge "$deadline" ]; do
    sleep 1
done

{
    sed -e "s|@PORT@|$SENTINEL_PORT|g" \
        -e "s|@DIR@|$SENTINEL_DIR|g" \
        -e "s|@ANNOUNCE_HOST@|$SENTINEL_ANNOUNCE_HOST|g" \
        -e "s|@MASTER_HOST@|$master_host|g" \
        -e "s|@MASTER_PORT@|$master_port|g" \
        "$REDIS_CONFIG_DIR/sentinel.conf"
    printf 'requirepass "%s"\nsentinel auth-pass %s "%s"\n' "$REDIS_PASSWORD" "$REDIS_MASTER_NAME" "$REDIS_PASSWORD"
#tls#     tls_config
} | write_private_config "$SENTINEL_DIR/sentinel.conf"

echo "sentinel monitors $REDIS_MASTER_NAME at $master" >&2
exec redis-sentinel "$SENTINEL_DIR/sentinel.conf"
