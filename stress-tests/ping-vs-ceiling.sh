#!/usr/bin/env bash
# /ping through the stack's nginx against the proxy ceiling (issue 10): nginx proxying, with the
# stack's upstream and proxy settings, to a backend nginx that answers `return 200` itself —
# what the replicas would give if they cost nothing. Both with wrk (k6 saturates first at these
# rates), one after the other, in one run; prints req/s and latency of each and the ratio.
#   stress-tests/ping-vs-ceiling.sh        wrk -t2 -c64 -d20s (THREADS, CONNECTIONS, DURATION)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
THREADS=${THREADS:-2}; CONNECTIONS=${CONNECTIONS:-64}; DURATION=${DURATION:-20s}
FRONT_PORT=${FRONT_PORT:-9997}; BACKEND_PORT=${BACKEND_PORT:-9996}
WORKERS=${NGINX_WORKERS:-auto}
command -v wrk >/dev/null || { log "wrk is missing: apt-get install wrk"; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
dir=$(mktemp -d)
cleanup() {
    local r pid
    for r in front backend; do
        pid=$(cat "$dir/$r.pid" 2>/dev/null) || continue
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do proc_alive "$pid" || break; sleep 0.1; done
    done
    rm -rf "$dir"
}
trap cleanup EXIT
render() { # ROLE LISTEN BODY
    sed -e "s|@ROLE@|$1|g" -e "s|@LISTEN@|$2|" -e "s|@BODY@|$3|" -e "s|@WORKERS@|$WORKERS|" \
        -e "s|@BACKEND_PORT@|$BACKEND_PORT|g" "$(dirname "$0")/proxy-ceiling-nginx.conf" >"$dir/$1.conf"
    mkdir -p "$dir/logs"
    "$NGINX" -p "$dir" -c "$dir/$1.conf" -e "$dir/logs/error.log"
}
render backend "127.0.0.1:$BACKEND_PORT" "default_type application/json; return 200 '{\"message\":\"pong from nginx\"}';"
render front "127.0.0.1:$FRONT_PORT" "proxy_pass http://ceiling; proxy_http_version 1.1; proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection \$connection_upgrade; proxy_set_header Host \$host; proxy_set_header X-Request-Start \$msec; proxy_buffering off;"
wait_port "$FRONT_PORT" 10; wait_port "$BACKEND_PORT" 10
run() { # NAME URL → "req/s p50 p99"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$2" >"$dir/$1.txt"
    awk -v name="$1" '/Requests\/sec/ {rps=$2} / 50%/ {p50=$2} / 99%/ {p99=$2} /Non-2xx/ {bad=$NF}
        END {printf "%-8s %10.0f req/s  p50 %-8s p99 %-8s non-2xx %s\n", name, rps, p50, p99, bad + 0; print rps > "/dev/stderr"}' "$dir/$1.txt" 2>"$dir/$1.rps"
}
curl -fsS "http://127.0.0.1:$ARENA_PORT/ping" >/dev/null || { log "the stack does not answer on $ARENA_PORT: scripts/up first"; exit 1; }
curl -fsS "http://127.0.0.1:$FRONT_PORT/ping" >/dev/null
wrk -t1 -c8 -d2s "http://127.0.0.1:$ARENA_PORT/ping" >/dev/null # warm-up
run stack "http://127.0.0.1:$ARENA_PORT/ping"
run ceiling "http://127.0.0.1:$FRONT_PORT/ping"
awk -v a="$(cat "$dir/stack.rps")" -v b="$(cat "$dir/ceiling.rps")" 'BEGIN {printf "ratio stack / proxy ceiling: %.2f\n", a / b}'
