# Shared by the scripts (scripts/*, stress-tests/*): where a stack keeps its state (the local
# one's, and scripts/docker-up's in $STATE/docker) and the helpers that start, find and stop its
# parts. Sourced, not run.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${ARENA_STATE_DIR:-$ROOT/.state}
REPLICAS=${REPLICAS:-2}
ARENA_PORT=${ARENA_PORT:-9999}
API_BASE_PORT=${API_BASE_PORT:-9001}
INSERTER_METRICS_PORT=${INSERTER_METRICS_PORT:-9100}
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/arena}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
export AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
export ADMIN_TOKEN=${ADMIN_TOKEN:-arena-admin}
# Login tokens are signed with it; every replica of a stack must share it.
export TOKEN_SECRET=${TOKEN_SECRET:-arena-local-token-secret}
# ARENA_BUILD=debug skips the slow optimised build while developing; release is the default.
ARENA_BUILD=${ARENA_BUILD:-release}
case $ARENA_BUILD in
    release) BIN=$ROOT/target/release/arena; BUILD_FLAGS=(--release) ;;
    debug) BIN=$ROOT/target/debug/arena; BUILD_FLAGS=() ;;
    *) echo "ARENA_BUILD is release or debug" >&2; exit 2 ;;
esac
# ARENA_BIN=path runs that binary and skips the build: before/after measurements of two commits
# (build each, copy it aside, run the stack on one, then the other).
if [ -n "${ARENA_BIN:-}" ]; then BIN=$(readlink -f "$ARENA_BIN"); fi
mkdir -p "$STATE/pids" "$STATE/logs" "$STATE/started"
# The compose files that define this stack's budget, read as `docker compose` reads them:
# COMPOSE_FILE, colon-separated, later files overriding earlier ones key by key (paths relative
# to the repository); docker-compose.yml alone by default. scripts/up --limits takes its caps from
# them, scripts/docker-up and docker-down pass them as -f. With docker-compose.chat.yml on top,
# the chat-scale budget (10 000 room sockets through nginx; the file says what it moves).
# COMPOSE_F holds them as docker compose's arguments (-f a -f b).
COMPOSE_FILES=() COMPOSE_F=()
IFS=: read -ra _compose_files <<<"${COMPOSE_FILE:-docker-compose.yml}"
for _f in "${_compose_files[@]}"; do
    [[ $_f = /* ]] || _f=$ROOT/$_f
    [ -f "$_f" ] || { echo "COMPOSE_FILE names $_f, which does not exist" >&2; exit 2; }
    COMPOSE_FILES+=("$_f") COMPOSE_F+=(-f "$_f")
done
unset _f _compose_files
compose_names() { local f n=(); for f in "${COMPOSE_FILES[@]}"; do n+=("${f#"$ROOT"/}"); done; local IFS=+; echo "${n[*]}"; }

log() { printf '\033[1m[arena]\033[0m %s\n' "$*" >&2; }

# Installs the Debian packages named, when this is root on a system with apt-get; otherwise says
# what to install. Fails when they are not installed.
apt_install() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        log "missing: $* — install them (Debian: apt-get install $*) and run again"; return 1
    fi
    log "installing $*"
    [ -f "$STATE/apt-updated" ] || { apt-get update -qq && touch "$STATE/apt-updated"; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >"$STATE/logs/apt.log" 2>&1 \
        || { tail -20 "$STATE/logs/apt.log"; return 1; }
}

# pip install SPEC…, quietly. Debian's system Python refuses pip installs (PEP 668,
# externally-managed-environment); as root on a throwaway machine we override that rather than
# manage a venv. pip itself comes from Debian when missing. Fails, showing pip's words, when the
# install does.
pip_install() {
    if ! python3 -m pip --version >/dev/null 2>&1; then apt_install python3-pip || return 1; fi
    local out; out=$(mktemp)
    if ! python3 -m pip install -q --disable-pip-version-check "$@" >"$out" 2>&1; then
        if grep -q externally-managed-environment "$out" && [ "$(id -u)" = 0 ]; then
            python3 -m pip install -q --disable-pip-version-check --break-system-packages "$@" >"$out" 2>&1 \
                || { cat "$out" >&2; rm -f "$out"; return 1; }
        else
            cat "$out" >&2; rm -f "$out"; log "could not install $* (pip install $*)"; return 1
        fi
    fi
    rm -f "$out"; hash -r
}

# The Swagger UI test drives a headless browser: Debian's chromium, installed when missing (as
# root with apt-get), else a warning. Fails only when the install does.
ensure_chromium() {
    command -v chromium >/dev/null || command -v chromium-browser >/dev/null && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing chromium (Swagger UI test)"
        [ -f "$STATE/apt-updated" ] || { apt-get update -qq && touch "$STATE/apt-updated"; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation >"$STATE/logs/apt-chromium.log" 2>&1 \
            || { tail -20 "$STATE/logs/apt-chromium.log"; return 1; }
    else
        log "chromium is missing: the Swagger UI test will fail (Debian: apt-get install chromium)"
    fi
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits up to $2 seconds (default 60) for port $1.
wait_port() {
    local port=$1 limit=${2:-60} i
    for ((i = 0; i < limit * 10; i++)); do port_open "$port" && return 0; sleep 0.1; done
    log "nothing answers on port $port after ${limit}s"; return 1
}

# True when process $1 runs. A killed process whose parent is gone may stay a zombie where
# PID 1 does not reap (containers), and `kill -0` still succeeds on a zombie: read its state.
proc_alive() { [ -n "$1" ] && [ -r "/proc/$1/stat" ] && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]; }

# True when the pid in file $1 is a live process.
# The file can vanish between the test and the read (nginx removes its own on quit).
pid_alive() { local pid; pid=$(cat "$1" 2>/dev/null) && proc_alive "$pid"; }

# Stops the process in pid file $1: SIGTERM (graceful), then SIGKILL after $2 seconds.
stop_pid() {
    local file=$1 grace=${2:-20} pid i
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    if proc_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < grace * 10; i++)); do proc_alive "$pid" || break; sleep 0.1; done
        if proc_alive "$pid"; then
            kill -KILL "$pid" 2>/dev/null || true
            # Gone before returning: its ports are free for whatever starts next.
            for ((i = 0; i < 20; i++)); do proc_alive "$pid" || break; sleep 0.1; done
        fi
    fi
    rm -f "$file"
}

replica_port() { echo $((API_BASE_PORT + $1 - 1)); }

# The binary process $1 runs: /proc/PID/exe (less " (deleted)" once cargo replaced the file), or
# what scripts/up wrote beside its pid file ($2) when /proc does not say.
running_bin() {
    local exe
    if exe=$(readlink "/proc/$1/exe" 2>/dev/null); then echo "${exe% (deleted)}"; else cat "$2" 2>/dev/null || echo "an unknown binary"; fi
}
# True when process $1 runs $BIN (the build ARENA_BUILD asks for).
runs_bin() { [ "$(running_bin "$1" "$2")" = "$(readlink -f "$BIN")" ]; }

# The replicas of the stack under test, one "name pid url" line each (pid: the process's id on
# this machine, also for a container's): scripts/up's from their pid files, or, with
# ARENA_BACKEND=compose (scripts/docker-up's stack.env), the running api containers of
# ARENA_COMPOSE_PROJECT by compose's container number, on their addresses in compose's network.
stack_replicas() {
    if [ "${ARENA_BACKEND:-local}" = compose ]; then
        local n id
        docker ps --filter "label=com.docker.compose.project=${ARENA_COMPOSE_PROJECT:-arena}" --filter label=com.docker.compose.service=api \
            --format '{{.Label "com.docker.compose.container-number"}} {{.ID}}' | sort -n | while read -r n id; do
            docker inspect -f "api$n {{.State.Pid}} {{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}" "$id" |
                awk '{ print $1, $2, "http://" $3 ":9999" }'
        done
    else
        local i
        for ((i = 1; i <= REPLICAS; i++)); do
            pid_alive "$STATE/pids/api$i.pid" && echo "api$i $(cat "$STATE/pids/api$i.pid") http://127.0.0.1:$(replica_port "$i")"
        done
        return 0
    fi
}
