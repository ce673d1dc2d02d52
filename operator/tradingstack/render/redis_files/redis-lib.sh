# Functions shared by the Redis and Sentinel scripts (sourced, POSIX sh).
# Needs REDIS_SENTINELS (comma-separated host:port), REDIS_MASTER_NAME and REDISCLI_AUTH (the password,
# which redis-cli reads from the environment so it never shows up in a process listing).

# One line per answering sentinel: "<config-epoch> <host> <port> <flags>".
# The address comes from get-master-addr-by-name, which names the promoted replica as soon as the failover
# leader has promoted it; SENTINEL MASTER gives the epoch and flags (o_down, failover_in_progress, ...).
sentinel_views() {
    for address in $(printf '%s' "$REDIS_SENTINELS" | tr ',' ' '); do
        host="${address%:*}"
        port="${address##*:}"
        state=$(timeout 2 redis-cli --raw -h "$host" -p "$port" SENTINEL MASTER "$REDIS_MASTER_NAME" 2>/dev/null) ||
            continue
        reply=$(timeout 2 redis-cli --raw -h "$host" -p "$port" \
            SENTINEL get-master-addr-by-name "$REDIS_MASTER_NAME" 2>/dev/null) || continue
        master_host=$(printf '%s\n' "$reply" | sed -n 1p)
        master_port=$(printf '%s\n' "$reply" | sed -n 2p)
        # SENTINEL MASTER answers alternating lines of field name and value.
        epoch=$(printf '%s\n' "$state" | awk 'NR % 2 == 1 { field = $0; next } field == "config-epoch" { print }')
        flags=$(printf '%s\n' "$state" | awk 'NR % 2 == 1 { field = $0; next } field == "flags" { print }')
        case "$master_port$epoch" in
            '' | *[!0-9]*) continue ;;
        esac
        printf '%s %s %s %s\n' "$epoch" "$master_host" "$master_port" "${flags:-none}"
    done
}

# Prints "host port state" of the master in the newest configuration any answering sentinel knows (highest
# config epoch; the most common address among those), where state is "failing-over" while a sentinel of
# that configuration flags it o_down or failover_in_progress, else "up". Prints nothing when none answers.
# The newest configuration wins, not the majority: for up to two seconds after a failover the sentinels
# that have not yet heard of it still name the old master, and a majority of them is no less stale.
sentinel_master() {
    sentinel_views | awk '
        NR == 1 || $1 > newest { newest = $1 }
        { epoch[NR] = $1; address[NR] = $2 " " $3; flags[NR] = $4 }
        END {
            for (i = 1; i <= NR; i++) {
                if (epoch[i] != newest) continue
                votes[address[i]]++
                if (flags[i] ~ /o_down|failover_in_progress/) failing[address[i]] = 1
            }
            for (a in votes)
                if (votes[a] > best || (votes[a] == best && a < chosen)) { best = votes[a]; chosen = a }
            if (best) print chosen, (failing[chosen] ? "failing-over" : "up")
        }'
}

# Writes a config file readable only by this user, so the password it carries stays private.
# Usage: write_private_config <target> (content on stdin); the rename makes the update atomic.
write_private_config() {
    (umask 077 && cat >"$1.tmp")
    mv "$1.tmp" "$1"
}
#tls# 
#tls# # With spec.tls: the files this server or sentinel serves TLS with, as config lines (the rendered config holds
#tls# # the TLS settings themselves; the paths come from the env, like the other placeholders).
#tls# tls_config() {
#tls#     printf 'tls-cert-file "%s"\ntls-key-file "%s"\ntls-ca-cert-file "%s"\n' \
#tls#         "$REDIS_TLS_CERT_FILE" "$REDIS_TLS_KEY_FILE" "$REDIS_TLS_CA_FILE"
#tls# }
