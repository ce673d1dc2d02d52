#!/bin/sh
# Starts one Redis server. The role comes from the sentinels, never from the pod's ordinal alone: a restarted
# old master therefore rejoins as a replica of whoever was promoted while it was away. Only when no sentinel
# knows a master (a brand-new stack) does ordinal 0 start as the master. A pod that the sentinels still name
# as master while they fail it over waits for the outcome (up to REDIS_FAILOVER_WAIT_SECONDS): starting as a
# master then would make a second master until Sentinel demotes it.
#
# Environment: POD_NAME, REDIS_ANNOUNCE_HOST, REDIS_PORT, REDIS_DATA_DIR, REDIS_RUN_DIR, REDIS_CONFIG_DIR,
# REDIS_SENTINELS, REDIS_MASTER_NAME, REDIS_PASSWORD, REDISCLI_AUTH, REDIS_SENTINEL_WAIT_SECONDS,
# REDIS_FAILOVER_WAIT_SECONDS.
set -eu
. "$REDIS_CONFIG_DIR/redis-lib.sh"

ordinal="${POD_NAME##*-}"
myself="$REDIS_ANNOUNCE_HOST $REDIS_PORT"
started=$(date +%s)
while :; do
    view=$(sentinel_master)
    master="${view% *}"
    now=$(date +%s)
    if [ -n "$view" ]; then
        if [ "$view" != "$myself failing-over" ] || [ "$now" -ge $((started + REDIS_FAILOVER_WAIT_SECONDS)) ]; then
            break
        fi
        echo "the sentinels are failing over from $POD_NAME; waiting for the new master" >&2
    elif [ "$now" -ge $((started + REDIS_SENTINEL_WAIT_SECONDS)) ]; then
        [ "$ordinal" = 0 ] && break
        echo "no sentinel reports a master for $REDIS_MASTER_NAME yet; waiting" >&2
    fi
    sleep 1
done

{
    sed -e "s|@PORT@|$REDIS_PORT|g" \
        -e "s|@DATA_DIR@|$REDIS_DATA_DIR|g" \
        -e "s|@ANNOUNCE_HOST@|$REDIS_ANNOUNCE_HOST|g" \
        "$REDIS_CONFIG_DIR/redis.conf"
    printf 'requirepass "%s"\nmasterauth "%s"\n' "$REDIS_PASSWORD" "$REDIS_PASSWORD"
#tls#     tls_config
    if [ -z "$view" ]; then
        echo "no sentinel knows a master: $POD_NAME bootstraps as the master" >&2
    elif [ "$master" = "$myself" ]; then
        echo "the sentinels name $POD_NAME as the master" >&2
    else
        echo "starting $POD_NAME as a replica of $master" >&2
        printf 'replicaof %s\n' "$master"
    fi
} | write_private_config "$REDIS_RUN_DIR/redis.conf"

exec redis-server "$REDIS_RUN_DIR/redis.conf"
