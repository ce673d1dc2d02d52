#!/bin/sh
# preStop hook: a master hands over before it stops, so a planned restart costs a switch of about a second
# instead of down-after-milliseconds of unavailability. Replicas stop straight away.
#
# Environment: as redis-start.sh, plus REDIS_PRESTOP_WAIT_SECONDS.
set -u
. "$REDIS_CONFIG_DIR/redis-lib.sh"

role=$(timeout 2 redis-cli --raw -p "$REDIS_PORT" ROLE 2>/dev/null | head -n 1)
[ "$role" = master ] || exit 0

# Writes stop here first (reads go on): every replica then catches up with every write this master confirmed,
# so whichever one the sentinels promote has them all. Without the pause, writes taken between the promotion and
# this master's demotion, confirmed by the other replica (still following this master), are lost when that
# replica follows the new master (seen on real pods: ~1 s of WAIT-acknowledged writes). The pause lasts until
# this pod stops.
timeout 2 redis-cli -p "$REDIS_PORT" CLIENT PAUSE "$((REDIS_PRESTOP_WAIT_SECONDS * 1000))" WRITE >/dev/null 2>&1 || true

for address in $(printf '%s' "$REDIS_SENTINELS" | tr ',' ' '); do
    reply=$(timeout 2 redis-cli --raw -h "${address%:*}" -p "${address##*:}" \
        SENTINEL FAILOVER "$REDIS_MASTER_NAME" 2>/dev/null) || continue
    [ "$reply" = OK ] && break
done

deadline=$(($(date +%s) + REDIS_PRESTOP_WAIT_SECONDS))
while [ "$(date +%s)" -lt "$deadline" ]; do
    view=$(sentinel_master)
    master="${view% *}"
    if [ -n "$view" ] && [ "$master" != "$REDIS_ANNOUNCE_HOST $REDIS_PORT" ]; then
        echo "handed over to $master" >&2
        exit 0
    fi
    sleep 0.2
done
echo "no failover within ${REDIS_PRESTOP_WAIT_SECONDS}s; stopping anyway" >&2
