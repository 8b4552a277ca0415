# The docker-compose budget without Docker: with `scripts/up --limits` every service of the local
# stack runs in its own cgroup with the CPU quota and memory limit docker-compose.yml gives it
# (deploy.resources.limits, read from the file so the two cannot drift; with COMPOSE_FILE, from
# those files merged as compose merges them: lib.sh). Sourced after lib.sh by
# scripts/up, scripts/down and stress-tests/run; also a command:
#   scripts/limits.sh status     the caps as applied (the table scripts/up --limits prints)
#   scripts/limits.sh off        lift them: processes back where they were, cgroups removed
#
# cgroup v2 (/sys/fs/cgroup/cgroup.controllers): cpu.max, memory.max, memory.peak.
# cgroup v1 (the cpu and memory hierarchies of /proc/mounts): cpu.cfs_quota_us / cfs_period_us,
# memory.limit_in_bytes, memory.max_usage_in_bytes.
# A service's cgroup is <hierarchy>/arena/<stack>/<service>, <stack> named after the state dir so
# two stacks on one machine do not collide. $STATE/limits/ records the services capped and the
# cgroup each came from (where `off` puts it back; the hierarchy's root if that one is gone).
#
# What is capped how:
#   api1…apiN, inserter, nginx    started inside their cgroups, both caps (each replica gets
#                                 compose's `api` limits; a process found running outside its
#                                 cgroup is restarted by scripts/up, so all its memory counts)
#   db, redis, rabbitmq           started by this scripts/up: started inside, CPU quota; memory
#                                 limit only if what they already use fits under it
#                                 shared (already listening, reused): moved in, CPU quota, memory
#                                 measured but not limited — an OOM kill would hit every stack
#                                 using them. LIMITS_SHARED=all limits it too (when it fits),
#                                 LIMITS_SHARED=none only measures.
# A memory limit below what a service already uses is never written (the kernel would reclaim or
# OOM-kill): the service keeps its CPU quota and the table says why the memory one is missing.

if [ "${BASH_SOURCE[0]}" = "$0" ]; then set -euo pipefail; source "$(dirname "$0")/lib.sh"; fi
LIMITS_SHARED=${LIMITS_SHARED:-cpu}
LIMITS_REC=$STATE/limits
# <stack>: the state dir's name and a checksum of its path (".state" → "state-1234567890").
LIMITS_ID=$(b=$(basename "$STATE"); b=${b#.}; printf '%s-%s' "${b//[^A-Za-z0-9_-]/_}" "$(printf %s "$STATE" | cksum | cut -d' ' -f1)")
CG_PERIOD=100000

# Sets CG_VERSION (1, 2 or empty), CG_CPU and CG_MEM (the hierarchies' mount points, empty when
# that controller cannot be used) and CG_WHY (why not). v2 only when it is the whole hierarchy:
# in hybrid mode the controllers are on the v1 mounts.
limits_detect() {
    CG_VERSION="" CG_CPU="" CG_MEM="" CG_WHY=""
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
        CG_VERSION=2
        local have; have=$(cat /sys/fs/cgroup/cgroup.controllers)
        [[ " $have " == *" cpu "* ]] && CG_CPU=/sys/fs/cgroup
        [[ " $have " == *" memory "* ]] && CG_MEM=/sys/fs/cgroup
    else
        CG_CPU=$(awk '$3 == "cgroup" && $4 ~ /(^|,)cpu(,|$)/ { print $2; exit }' /proc/mounts)
        CG_MEM=$(awk '$3 == "cgroup" && $4 ~ /(^|,)memory(,|$)/ { print $2; exit }' /proc/mounts)
        [ -n "$CG_CPU$CG_MEM" ] && CG_VERSION=1
    fi
    [ -n "$CG_CPU" ] && [ ! -w "$CG_CPU" ] && CG_CPU=""
    [ -n "$CG_MEM" ] && [ ! -w "$CG_MEM" ] && CG_MEM=""
    if [ -z "$CG_VERSION" ]; then CG_WHY="no cgroup v1 cpu/memory mount and no cgroup v2 hierarchy"
    elif [ -z "$CG_CPU$CG_MEM" ]; then CG_WHY="cgroup v$CG_VERSION: cpu and memory controllers missing or not writable (root needed)"
    fi
    [ -z "$CG_WHY" ]
}

# The cgroup directory of service $2 for controller $1 (cpu or memory); on v2 both are one.
cg_dir() {
    local root; [ "$1" = cpu ] && root=$CG_CPU || root=$CG_MEM
    [ -n "$root" ] && echo "$root/arena/$LIMITS_ID/$2"
}
# The controllers in use, once each (v2: one directory holds both).
cg_ctrls() {
    if [ "$CG_VERSION" = 2 ]; then echo unified
    else [ -n "$CG_CPU" ] && echo cpu; [ -n "$CG_MEM" ] && echo memory; fi
}
cg_dir_of() { if [ "$1" = unified ]; then cg_dir memory "$2" || cg_dir cpu "$2"; else cg_dir "$1" "$2"; fi; }

# Path of process $1's cgroup for controller $2 (cpu, memory or unified), relative to the mount.
proc_cgroup() {
    if [ "$2" = unified ]; then sed -n 's/^0:://p' "/proc/$1/cgroup" 2>/dev/null || true
    else awk -F: -v c="$2" '{ n = split($2, a, ","); for (i = 1; i <= n; i++) if (a[i] == c) { print $3; exit } }' "/proc/$1/cgroup" 2>/dev/null || true; fi
}
# True when process $1 is in service $2's cgroup(s).
in_cgroup() {
    local ctrl
    [ -n "$(cg_ctrls)" ] || return 1
    for ctrl in $(cg_ctrls); do [ "$(proc_cgroup "$1" "$ctrl")" = "/arena/$LIMITS_ID/$2" ] || return 1; done
}

# The start of both readers below, an awk program over the compose files (COMPOSE_FILES,
# lib.sh): only lines inside `services:` get past it, with `svc` the service whose block they are
# in. A reader opens a nested map by setting `inner` and `innerind` (its key's indentation); the
# map ends at the next line indented no deeper, or at the next service.
COMPOSE_WALK='
    FNR == 1 { insvc = 0; inner = 0; svc = "" }
    /^services:/ { insvc = 1; next }
    insvc && /^[^ #]/ { insvc = 0 }
    !insvc { next }
    /^  [A-Za-z0-9_.-]+:/ { svc = $1; sub(/:.*/, "", svc); inner = 0; next }
    inner && match($0, /[^ ]/) <= innerind { inner = 0 }
'
# "service cpus memory" for each service with deploy.resources.limits (inline `limits: { cpus:
# "0.3", memory: "60MB" }` or one key a line); a later file's value replaces an earlier one's,
# key by key, as compose merges them.
compose_limits() {
    awk "$COMPOSE_WALK"'
        /^ *limits:/ { inner = 1; innerind = match($0, /[^ ]/) }
        inner && match($0, /cpus:[^0-9,}]*[0-9.]+/) { v = substr($0, RSTART, RLENGTH); sub(/^cpus:[^0-9]*/, "", v); cpus[svc] = v; seen[svc] = 1 }
        inner && match($0, /memory:[^0-9,}]*[0-9.]+[A-Za-z]*/) { v = substr($0, RSTART, RLENGTH); sub(/^memory:[^0-9]*/, "", v); mem[svc] = v; seen[svc] = 1 }
        END { for (s in seen) print s, (s in cpus ? cpus[s] : "-"), (s in mem ? mem[s] : "-") }
    ' "${COMPOSE_FILES[@]}"
}
# The value service $1's `environment:` map gives variable $2 in the compose files (the last
# file that sets it wins), empty when none does. Only a service's own map: one merged in from
# an x- anchor is not seen, so this is for what an override file sets.
compose_env() {
    awk -v want="$1" -v key="$2" "$COMPOSE_WALK"'
        svc == want && /^ *environment:/ { inner = 1; innerind = match($0, /[^ ]/); next }
        inner && $1 == key ":" { v = $0; sub(/^[^:]*:[ ]*/, "", v); sub(/[ ]+#.*/, "", v); gsub(/^["\047]|["\047]$/, "", v); val = v }
        END { print val }
    ' "${COMPOSE_FILES[@]}"
}
# Docker's units: 60MB, 60m and 60MiB are all 60 × 1024² bytes.
mem_bytes() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = tolower(v); sub(/^[0-9.]+/, "", u); sub(/i?b$/, "", u)
        m = u == "k" ? 1024 : u == "m" ? 1048576 : u == "g" ? 1073741824 : 1
        printf "%d\n", n * m }'
}
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# Processes: $1 and all its descendants.
with_descendants() {
    ps -e -o pid= -o ppid= | awk -v root="$1" '
        { kids[$2] = kids[$2] " " $1 }
        END { q[1] = root; n = 1; for (i = 1; i <= n; i++) { print q[i]; m = split(kids[q[i]], k, " "); for (j = 1; j <= m; j++) q[++n] = k[j] } }'
}
# The pid listening on TCP port $1 on this host, if any.
listener_pid() { { ss -Hltnp "sport = :$1" 2>/dev/null || true; } | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1; }
url_port() { local p; p=$(sed -E 's#^[a-z]+://([^@/]*@)?[^:/]*(:([0-9]+))?.*#\3#' <<<"$1"); echo "${p:-$2}"; }

# The services of this stack, in table order.
limits_services() {
    local i; for ((i = 1; i <= REPLICAS; i++)); do echo "api$i"; done
    echo inserter nginx db redis rabbitmq | tr ' ' '\n'
}
# The pids of service $1 as they run now (all of a server's processes: its children too).
service_pids() {
    local p
    case $1 in
        api*|inserter) pid_alive "$STATE/pids/$1.pid" && cat "$STATE/pids/$1.pid" ;;
        nginx) pid_alive "$STATE/nginx/nginx.pid" && with_descendants "$(cat "$STATE/nginx/nginx.pid")" ;;
        db) p=$(listener_pid "$(url_port "$DATABASE_URL" 5432)"); [ -n "$p" ] && with_descendants "$p" ;;
        redis) p=$(listener_pid "$(url_port "$REDIS_URL" 6379)"); [ -n "$p" ] && with_descendants "$p" ;;
        rabbitmq)
            p=$(listener_pid "$(url_port "$AMQP_URL" 5672)"); [ -n "$p" ] && with_descendants "$p"
            p=$(listener_pid 4369); [ -n "$p" ] && echo "$p" ;;   # epmd
    esac
    return 0
}
# Which of scripts/up's started/ files says this stack started service $1 (db, redis, rabbitmq).
started_file() { case $1 in db) echo "$STATE/started/postgres" ;; redis|rabbitmq) echo "$STATE/started/$1" ;; esac; }
is_shared() { case $1 in db|redis|rabbitmq) [ ! -f "$(started_file "$1")" ] ;; *) return 1 ;; esac; }
# The compose limits of service $1 as "cpus memory". Replica apiN takes compose's `api` (one
# service scaled to N containers, each with these limits), or an `apiN` service, or `api1`'s.
compose_limit_of() {
    local all line name; all=$(compose_limits)
    for name in "$1" api api1; do
        line=$(awk -v s="$name" '$1 == s { print $2, $3 }' <<<"$all")
        [ -n "$line" ] || [[ $1 != api* ]] && break
    done
    echo "${line:-- -}"
}
# Proportional set size of processes $@ in KiB: shared pages (PostgreSQL's buffers) split among
# the processes mapping them, so a sum over a service is what it really holds.
pss_kb() {
    [ $# -gt 0 ] || { echo 0; return; }
    local p files=(); for p in "$@"; do files+=("/proc/$p/smaps_rollup"); done
    # cat goes on past a process that has just exited; awk always prints one number.
    { cat "${files[@]}" 2>/dev/null || true; } | awk '/^Pss:/ { s += $2 } END { print s + 0 }'
}
cg_procs() { local d; d=$(cg_dir memory "$1") || d=$(cg_dir cpu "$1"); cat "$d/cgroup.procs" 2>/dev/null || true; }

cg_write() { { printf '%s\n' "$2" >"$1"; } 2>/dev/null; }
cg_set_cpu() {  # service, cpus ("-" for no quota)
    local d; d=$(cg_dir cpu "$1") || return 1
    local q=-1; [ "$2" != - ] && q=$(awk -v c="$2" -v p="$CG_PERIOD" 'BEGIN { printf "%d", c * p }')
    if [ "$CG_VERSION" = 2 ]; then
        [ "$q" = -1 ] && q=max; cg_write "$d/cpu.max" "$q $CG_PERIOD"
    else
        cg_write "$d/cpu.cfs_period_us" "$CG_PERIOD" && cg_write "$d/cpu.cfs_quota_us" "$q"
    fi
}
cg_set_mem() {  # service, bytes ("-" for no limit)
    local d; d=$(cg_dir memory "$1") || return 1
    if [ "$CG_VERSION" = 2 ]; then cg_write "$d/memory.max" "$([ "$2" = - ] && echo max || echo "$2")"
    else cg_write "$d/memory.limit_in_bytes" "$([ "$2" = - ] && echo -1 || echo "$2")"; fi
}
# As applied, read back: "0.30" / "-" and bytes / "-".
cg_cpu_applied() {
    local d q p; d=$(cg_dir cpu "$1") && [ -d "$d" ] || { echo -; return; }
    if [ "$CG_VERSION" = 2 ]; then read -r q p <"$d/cpu.max"; else q=$(cat "$d/cpu.cfs_quota_us"); p=$(cat "$d/cpu.cfs_period_us"); fi
    case $q in max|-1) echo - ;; *) awk -v q="$q" -v p="$p" 'BEGIN { printf "%.2f", q / p }' ;; esac
}
cg_mem_applied() {
    local d v; d=$(cg_dir memory "$1") && [ -d "$d" ] || { echo -; return; }
    if [ "$CG_VERSION" = 2 ]; then v=$(cat "$d/memory.max"); else v=$(cat "$d/memory.limit_in_bytes"); fi
    # v1 writes "no limit" as the largest page-aligned 63-bit number.
    if [ "$v" = max ] || [ "${#v}" -ge 18 ]; then echo -; else echo "$v"; fi
}
cg_mem_current() {
    local d; d=$(cg_dir memory "$1") || { echo 0; return; }
    cat "$d/memory.current" 2>/dev/null || cat "$d/memory.usage_in_bytes" 2>/dev/null || echo 0
}
# Peak memory since the last cg_mem_peak_reset (v1) or since the cgroup was made (v2, where a
# reset needs kernel 6.12 and an open file): stress-tests/run samples memory.current besides.
cg_mem_peak() {
    local d; d=$(cg_dir memory "$1") || { echo 0; return; }
    cat "$d/memory.max_usage_in_bytes" 2>/dev/null || cat "$d/memory.peak" 2>/dev/null || echo 0
}
cg_mem_peak_reset() { local d; d=$(cg_dir memory "$1") && cg_write "$d/memory.max_usage_in_bytes" 0; }
cg_oom_kills() {
    local d; d=$(cg_dir memory "$1") || { echo 0; return; }
    { cat "$d/memory.events" 2>/dev/null || cat "$d/memory.oom_control" 2>/dev/null || true; } |
        awk '$1 == "oom_kill" { n = $2 } END { print n + 0 }'
}
# CPU time spent throttled, in seconds.
cg_throttled_s() {
    local d; d=$(cg_dir cpu "$1") || { echo 0; return; }
    { cat "$d/cpu.stat" 2>/dev/null || true; } |
        awk '$1 == "throttled_time" { t = $2 / 1e9 } $1 == "throttled_usec" { t = $2 / 1e6 } END { printf "%.1f\n", t }'
}

# Records the cgroups process $2 is in now as service $1's origin (once).
record_origin() {
    local f=$LIMITS_REC/$1.origin ctrl
    [ -f "$f" ] && return 0
    for ctrl in $(cg_ctrls); do echo "$ctrl $(proc_cgroup "$2" "$ctrl")"; done >"$f"
}
# Moves pids $2… into service $1's cgroup(s).
cg_move() {
    local svc=$1 ctrl d p; shift
    for ctrl in $(cg_ctrls); do
        d=$(cg_dir_of "$ctrl" "$svc")
        for p in "$@"; do cg_write "$d/cgroup.procs" "$p" || true; done
    done
}

# v2: a child cgroup gets cpu and memory only if every ancestor enables them for its children.
cg_v2_delegate() {
    local path=/sys/fs/cgroup part
    for part in "" arena "arena/$LIMITS_ID"; do
        [ -n "$part" ] && { path=/sys/fs/cgroup/$part; mkdir -p "$path" 2>/dev/null || return 1; }
        grep -qw cpu "$path/cgroup.subtree_control" && grep -qw memory "$path/cgroup.subtree_control" && continue
        cg_write "$path/cgroup.subtree_control" "+cpu +memory" || { CG_WHY="cannot enable cpu and memory in $path/cgroup.subtree_control (processes live there: a container's own cgroup?)"; return 1; }
    done
}

# Before anything starts: every service's cgroup, with its CPU quota, and the memory limit of
# the processes about to start inside (arena's and nginx). Sets LIMITS_READY=1 on success.
limits_prepare() {
    LIMITS_READY=0
    limits_detect || return 1
    if [ "$CG_VERSION" = 2 ]; then cg_v2_delegate || { CG_CPU="" CG_MEM=""; return 1; }; fi
    mkdir -p "$LIMITS_REC"
    local svc cpus mem ctrl
    for svc in $(limits_services); do
        read -r cpus mem <<<"$(compose_limit_of "$svc")"
        for ctrl in $(cg_ctrls); do mkdir -p "$(cg_dir_of "$ctrl" "$svc")" || return 1; done
        grep -qx "$svc" "$LIMITS_REC/services" 2>/dev/null || echo "$svc" >>"$LIMITS_REC/services"
        if is_shared "$svc" && [ "$LIMITS_SHARED" = none ]; then cg_set_cpu "$svc" -; else cg_set_cpu "$svc" "$cpus"; fi
        case $svc in
            db|redis|rabbitmq) ;;   # decided by limits_apply, once their usage is known
            *) cg_set_mem "$svc" "$([ "$mem" = - ] && echo - || mem_bytes "$mem")" ;;
        esac
    done
    echo "$CG_VERSION" >"$LIMITS_REC/version"
    LIMITS_READY=1
}

# Sets CG_WRAP to a command prefix that runs the rest inside service $1's cgroup(s) when the
# limits are on (empty otherwise), keeping the pid: nohup "${CG_WRAP[@]}" cmd … & ; echo $!
cg_wrap() {
    CG_WRAP=()
    [ "${LIMITS_READY:-0}" = 1 ] || return 0
    local ctrl procs=()
    for ctrl in $(cg_ctrls); do procs+=("$(cg_dir_of "$ctrl" "$1")/cgroup.procs"); done
    [ -f "$LIMITS_REC/$1.origin" ] || for ctrl in $(cg_ctrls); do echo "$ctrl $(proc_cgroup $$ "$ctrl")"; done >"$LIMITS_REC/$1.origin"
    CG_WRAP=(env "CG_PROCS=${procs[*]}" bash -c 'for f in $CG_PROCS; do echo $$ >"$f"; done; unset CG_PROCS; exec "$@"' cg_wrap)
}

# For a process beside the stack (ping-vs-static.sh's static nginx): a cgroup $2 with service
# $1's caps as applied, when the stack is capped; removed with the others. Sets CG_WRAP.
limits_like() {
    CG_WRAP=()
    grep -qx "$1" "$LIMITS_REC/services" 2>/dev/null && limits_detect || return 0
    local ctrl
    for ctrl in $(cg_ctrls); do mkdir -p "$(cg_dir_of "$ctrl" "$2")" || return 0; done
    grep -qx "$2" "$LIMITS_REC/services" || echo "$2" >>"$LIMITS_REC/services"
    cg_set_cpu "$2" "$(cg_cpu_applied "$1")" || true
    cg_set_mem "$2" "$(cg_mem_applied "$1")" || true
    LIMITS_READY=1 cg_wrap "$2"
}

# After everything runs: moves in what runs outside its cgroup (shared services), decides the
# servers' memory limits, prints the table. Returns 3 when nothing at all could be capped.
limits_apply() {
    local svc cpus mem pids pid cur capped=0 notes=() note ctrl where
    [ "${LIMITS_READY:-0}" = 1 ] || { log "limits: NOT APPLIED — ${CG_WHY:-cgroups unavailable}; the stack runs uncapped"; return 3; }
    for svc in $(limits_services); do
        read -r cpus mem <<<"$(compose_limit_of "$svc")"
        mapfile -t pids < <(service_pids "$svc")
        note=""
        if [ ${#pids[@]} -eq 0 ]; then notes+=("$svc|not running"); continue; fi
        # A shared service another stack has capped stays with that stack.
        where=""
        for ctrl in $(cg_ctrls); do
            cur=$(proc_cgroup "${pids[0]}" "$ctrl")
            [[ $cur == /arena/* && $cur != "/arena/$LIMITS_ID/"* ]] && where=$cur
        done
        if [ -n "$where" ]; then
            log "limits: $svc is already in another stack's cgroup ($where): left there"
            notes+=("$svc|left in $where (another stack's caps)"); continue
        fi
        in_cgroup "${pids[0]}" "$svc" || record_origin "$svc" "${pids[0]}"
        cg_move "$svc" "${pids[@]}"
        case $svc in db|redis|rabbitmq)
            if is_shared "$svc" && [ "$LIMITS_SHARED" = none ]; then cg_set_cpu "$svc" -; else cg_set_cpu "$svc" "$cpus"; fi
            local want=-
            [ "$mem" != - ] && want=$(mem_bytes "$mem")
            cur=$(( $(pss_kb "${pids[@]}") * 1024 ))
            if [ "$want" = - ]; then :
            elif is_shared "$svc" && [ "$LIMITS_SHARED" = none ]; then
                note="measured only: shared (reused, not started by scripts/up) and LIMITS_SHARED=none; uses $(mib "$cur") MiB"
                want=-
            elif is_shared "$svc" && [ "$LIMITS_SHARED" != all ]; then
                note="memory not limited: shared (reused, not started by scripts/up), uses $(mib "$cur") MiB; LIMITS_SHARED=all to limit"
                want=-
            elif [ "$cur" -ge "$want" ]; then
                log "limits: WARNING $svc already uses $(mib "$cur") MiB (PSS), more than its $mem cap: memory NOT limited (it would be OOM-killed)"
                note="memory not limited: uses $(mib "$cur") MiB > $mem"
                want=-
            fi
            cg_set_mem "$svc" "$want" || note="memory limit refused by the kernel"
        esac
        [ "$(cg_cpu_applied "$svc")" != - ] || [ "$(cg_mem_applied "$svc")" != - ] && capped=1
        notes+=("$svc|$note")
    done
    limits_table "${notes[@]}"
    [ "$capped" = 1 ] || { log "limits: nothing could be capped"; return 3; }
}

# The table: service, processes in its cgroup, CPU quota and memory limit as the kernel has them.
limits_table() {
    local row svc note n cpu mem
    printf '%-10s %5s  %-9s %-13s %s\n' service pids cpu memory note >&2
    for row in "$@"; do
        svc=${row%%|*}; note=${row#*|}
        n=$(cg_procs "$svc" | grep -c . || true)
        cpu=$(cg_cpu_applied "$svc"); mem=$(cg_mem_applied "$svc")
        [ "$mem" != - ] && mem="$(mib "$mem") MiB"
        [ "$cpu" = - ] && cpu=none; [ "$mem" = - ] && mem=none
        printf '%-10s %5s  %-9s %-13s %s\n' "$svc" "$n" "$cpu" "$mem" "$note" >&2
    done
    local ctrl where=()
    for ctrl in $(cg_ctrls); do where+=("$(dirname "$(cg_dir_of "$ctrl" x)")"); done
    log "limits: cgroup v$CG_VERSION, ${where[*]} ($(compose_names) deploy.resources.limits; CPU period ${CG_PERIOD}µs)"
}

limits_status() {
    [ -f "$LIMITS_REC/services" ] || { log "limits: none (scripts/up --limits applies them)"; return 0; }
    limits_detect || true
    local rows=() svc; while read -r svc; do rows+=("$svc|"); done <"$LIMITS_REC/services"
    limits_table "${rows[@]}"
}

# Lifts this stack's caps: each process back to the cgroup its service came from (or the
# hierarchy's root if that one is gone), the cgroups removed.
limits_off() {
    [ -d "$LIMITS_REC" ] || return 0
    limits_detect || true
    local svc ctrl d dest orig p n=0
    for svc in $(cat "$LIMITS_REC/services" 2>/dev/null); do
        for ctrl in $(cg_ctrls); do
            d=$(cg_dir_of "$ctrl" "$svc"); [ -d "$d" ] || continue
            orig=$(awk -v c="$ctrl" '$1 == c { print $2 }' "$LIMITS_REC/$svc.origin" 2>/dev/null || true)
            dest=${d%/arena/*}$orig
            for p in $(cat "$d/cgroup.procs" 2>/dev/null); do
                cg_write "$dest/cgroup.procs" "$p" || cg_write "${d%/arena/*}/cgroup.procs" "$p" || true
            done
            rmdir "$d" 2>/dev/null || log "limits: could not remove $d"
        done
        n=$((n + 1))
    done
    for ctrl in $(cg_ctrls); do
        d=$(cg_dir_of "$ctrl" x); d=${d%/x}
        rmdir "$d" 2>/dev/null || true; rmdir "${d%/*}" 2>/dev/null || true
    done
    rm -rf "$LIMITS_REC"
    # So that advanced_tests' heal (scripts/up with stack.env's settings) does not cap it again.
    [ -f "$STATE/stack.env" ] && sed -i 's/^LIMITS=1$/LIMITS=0/' "$STATE/stack.env"
    log "limits: lifted ($n services back where they were)"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    case ${1:-status} in
        status) limits_status ;;
        off) limits_off ;;
        *) echo "usage: scripts/limits.sh [status|off]" >&2; exit 2 ;;
    esac
fi
