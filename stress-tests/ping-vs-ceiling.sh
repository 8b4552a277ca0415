#!/usr/bin/env bash
# /ping through the stack's nginx against the proxy ceiling (issue 10): nginx proxying, with the
# stack's upstream and proxy settings, to a backend nginx that answers `return 200` itself —
# what the replicas would give if they cost nothing. Both with wrk (k6 saturates first at these
# rates), one after the other, in one run; prints req/s and latency of each and the ratio, then
# the CPU each side's processes spent per request (from /proc: where the difference goes).
#   stress-tests/ping-vs-ceiling.sh        wrk -t2 -c64 -d20s (THREADS, CONNECTIONS, DURATION)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
source "$(dirname "$0")/../scripts/limits.sh"
THREADS=${THREADS:-2}; CONNECTIONS=${CONNECTIONS:-64}; DURATION=${DURATION:-20s}
FRONT_PORT=${FRONT_PORT:-9997}; BACKEND_PORT=${BACKEND_PORT:-9996}
# The front runs the stack nginx's worker count; the backend one nginx worker per replica
# worker thread (what it stands in for).
FRONT_WORKERS=$(awk '$1 == "worker_processes" { sub(/;.*/, "", $2); print $2; exit }' "$STATE/nginx/nginx.conf" 2>/dev/null || true)
FRONT_WORKERS=${FRONT_WORKERS:-auto}
BACKEND_WORKERS=$((REPLICAS * ${WORKERS:-1}))
command -v wrk >/dev/null || apt_install wrk || exit 1
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
render() { # ROLE LISTEN BODY WORKERS
    sed -e "s|@ROLE@|$1|g" -e "s|@LISTEN@|$2|" -e "s|@BODY@|$3|" -e "s|@WORKERS@|$4|" \
        -e "s|@BACKEND_PORT@|$BACKEND_PORT|g" "$(dirname "$0")/proxy-ceiling-nginx.conf" >"$dir/$1.conf"
    mkdir -p "$dir/logs"
    "$NGINX" -p "$dir" -c "$dir/$1.conf" -e "$dir/logs/error.log"
}
render backend "127.0.0.1:$BACKEND_PORT" "default_type application/json; return 200 '{\"message\":\"pong from nginx\"}';" "$BACKEND_WORKERS"
render front "127.0.0.1:$FRONT_PORT" "proxy_pass http://ceiling; proxy_http_version 1.1; proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection \$connection_upgrade; proxy_set_header Host \$host; proxy_set_header X-Request-Start \$msec; proxy_buffering off;" "$FRONT_WORKERS"
wait_port "$FRONT_PORT" 10; wait_port "$BACKEND_PORT" 10
# CPU ticks (user + system) of the given processes, all their threads.
ticks() { local p t=0; for p in "$@"; do [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
HZ=$(getconf CLK_TCK)
# run NAME URL GROUP=PIDS… → "NAME req/s p50 p99 non-2xx", then "cpu NAME GROUP µs/req …"
# (wrk's own CPU from getrusage of its children: its ticks vanish with it).
run() {
    local name=$1 url=$2 g before=() groups=() requests; shift 2
    for g in "$@"; do groups+=("${g%%=*}"); before+=("$(ticks ${g#*=})"); done
    python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[2:], stdout=open(sys.argv[1], "w"), check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(r.ru_utime + r.ru_stime, file=sys.stderr)' "$dir/$name.txt" \
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$url" 2>"$dir/$name.wrk-cpu"
    awk -v name="$name" '/Requests\/sec/ {rps=$2} / 50%/ {p50=$2} / 99%/ {p99=$2} /Non-2xx/ {bad=$NF}
        END {printf "%-8s %10.0f req/s  p50 %-8s p99 %-8s non-2xx %s\n", name, rps, p50, p99, bad + 0; print rps > "/dev/stderr"}' "$dir/$name.txt" 2>"$dir/$name.rps"
    requests=$(awk '/requests in/ {print $1}' "$dir/$name.txt")
    local line="cpu $name" i=0 us total=0
    for g in "$@"; do
        us=$(awk -v a="${before[$i]}" -v b="$(ticks ${g#*=})" -v hz="$HZ" -v n="$requests" 'BEGIN {printf "%.1f", (b - a) / hz * 1e6 / n}')
        line+="  ${groups[$i]} $us"; total=$(awk -v t="$total" -v u="$us" 'BEGIN {print t + u}'); i=$((i + 1))
    done
    us=$(awk -v s="$(cat "$dir/$name.wrk-cpu")" -v n="$requests" 'BEGIN {printf "%.1f", s * 1e6 / n}')
    echo "$line  wrk $us  total $(awk -v t="$total" -v u="$us" 'BEGIN {printf "%.1f", t + u}') µs/req"
}
curl -fsS "http://127.0.0.1:$ARENA_PORT/ping" >/dev/null || { log "the stack does not answer on $ARENA_PORT: scripts/up first"; exit 1; }
curl -fsS "http://127.0.0.1:$FRONT_PORT/ping" >/dev/null
wrk -t1 -c8 -d2s "http://127.0.0.1:$ARENA_PORT/ping" >/dev/null # warm-up
replicas=$(for svc in $(limits_services); do if [[ $svc == api* ]]; then service_pids "$svc"; fi; done)
# The masters sleep: their workers are what counts (ps lists them as the masters' children).
workers_of() { ps -o pid= --ppid "$(cat "$1")" | tr '\n' ' '; }
run stack "http://127.0.0.1:$ARENA_PORT/ping" "nginx=$(workers_of "$STATE/nginx/nginx.pid")" "replicas=$(echo $replicas)" >"$dir/stack.out"
run ceiling "http://127.0.0.1:$FRONT_PORT/ping" "nginx=$(workers_of "$dir/front.pid")" "backend=$(workers_of "$dir/backend.pid")" >"$dir/ceiling.out"
grep -v '^cpu' "$dir/stack.out" "$dir/ceiling.out" | cut -d: -f2-
awk -v a="$(cat "$dir/stack.rps")" -v b="$(cat "$dir/ceiling.rps")" 'BEGIN {printf "ratio stack / proxy ceiling: %.2f\n", a / b}'
echo "workers: stack nginx $FRONT_WORKERS, $REPLICAS replicas × ${WORKERS:-1}; ceiling front $FRONT_WORKERS, backend $BACKEND_WORKERS"
echo "CPU per request, by process group (the machine's cores are shared by all of them):"
grep -h '^cpu' "$dir/stack.out" "$dir/ceiling.out"
