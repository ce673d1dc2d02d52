# Functions shared by the Redis and Sentinel scripts (sourced, POSIX sh).
# Needs REDIS_SENTINELS (comma-separated host:port), REDIS_MASTER_NAME and REDISCLI_AUTH (the password,
# which redis-cli reads from the environment so it never shows up in a process listing).

# Prints "host port" of the master that most answering sentinels report; prints nothing when none answers.
# The most common answer wins so that one sentinel with a stale view cannot make a pod pick the wrong master.
sentinel_master() {
    answers=""
    for address in $(printf '%s' "$REDIS_SENTINELS" | tr ',' ' '); do
        reply=$(timeout 2 redis-cli --raw -h "${address%:*}" -p "${address##*:}" \
            SENTINEL get-master-addr-by-name "$REDIS_MASTER_NAME" 2>/dev/null) || continue
        host=$(printf '%s\n' "$reply" | sed -n 1p)
        port=$(printf '%s\n' "$reply" | sed -n 2p)
        case "$port" in
            '' | *[!0-9]*) continue ;;
        esac
        answers="$answers$host $port
"
    done
    printf '%s' "$answers" | sed '/^$/d' | sort | uniq -c | sort -rn | head -n 1 | awk '{print $2, $3}'
}

# Writes a config file readable only by this user, so the password it carries stays private.
# Usage: write_private_config <target> (content on stdin); the rename makes the update atomic.
write_private_config() {
    (umask 077 && cat >"$1.tmp")
    mv "$1.tmp" "$1"
}
