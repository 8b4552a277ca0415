# The cgroup readers of limits.sh (cg_dir, service_pids, cg_oom_kills, …) for the containers of
# a compose project instead of scripts/up's cgroups: Docker made each container's cgroup with
# its compose limits, so stress-tests/run measures a compose stack with the same code and the
# same service names (api1…apiN, inserter, nginx, db, redis, rabbitmq). Sourced after lib.sh and
# limits.sh; ARENA_COMPOSE_PROJECT names the project (arena).
#
# OOM kills are counted from Docker's own `oom` events (docker_oom_watch), not from the cgroup's
# counter: a container killed and started again gets a new cgroup, and its count with it.

DOCKER_PROJECT=${ARENA_COMPOSE_PROJECT:-arena}

# The cgroup roots, for reading: limits.sh's limits_detect leaves out a hierarchy it cannot
# write to (it makes cgroups there), but reading a container's needs only read access, which a
# member of the docker group has.
cg_read_roots() {
    limits_detect || true
    if [ "$CG_VERSION" = 2 ]; then
        CG_CPU=${CG_CPU:-/sys/fs/cgroup} CG_MEM=${CG_MEM:-/sys/fs/cgroup}
    elif [ "$CG_VERSION" = 1 ]; then
        [ -n "$CG_CPU" ] || CG_CPU=$(awk '$3 == "cgroup" && $4 ~ /(^|,)cpu(,|$)/ { print $2; exit }' /proc/mounts)
        [ -n "$CG_MEM" ] || CG_MEM=$(awk '$3 == "cgroup" && $4 ~ /(^|,)memory(,|$)/ { print $2; exit }' /proc/mounts)
    fi
}

# The id of service $1's container (apiN: compose's container number N), running or not.
container_of() {
    local svc=$1 n=1
    [[ $svc =~ ^api([0-9]+)$ ]] && { svc=api; n=${BASH_REMATCH[1]}; }
    docker ps -aq --filter "label=com.docker.compose.project=$DOCKER_PROJECT" \
        --filter "label=com.docker.compose.service=$svc" --filter "label=com.docker.compose.container-number=$n" | head -1
}

limits_services() {
    local n
    n=$(docker ps -q --filter "label=com.docker.compose.project=$DOCKER_PROJECT" --filter label=com.docker.compose.service=api | wc -l)
    for ((i = 1; i <= n; i++)); do echo "api$i"; done
    echo inserter nginx db redis rabbitmq | tr ' ' '\n'
}

# The container's cgroup for controller $1 (cpu or memory), from its main process's
# /proc/PID/cgroup: right for Docker's cgroupfs and systemd drivers alike.
cg_dir() {
    local id pid root rel
    id=$(container_of "$2"); [ -n "$id" ] || return 1
    pid=$(docker inspect -f '{{.State.Pid}}' "$id" 2>/dev/null); [ "${pid:-0}" -gt 0 ] || return 1
    [ "$1" = cpu ] && root=$CG_CPU || root=$CG_MEM
    [ -n "$root" ] || return 1
    if [ "$CG_VERSION" = 2 ]; then rel=$(proc_cgroup "$pid" unified); else rel=$(proc_cgroup "$pid" "$1"); fi
    echo "$root$rel"
}

# Every process of the container.
service_pids() { cg_procs "$1"; }

# The container's compose limits as Docker applied them ("cpus bytes").
docker_limits_of() {
    local id; id=$(container_of "$1")
    [ -n "$id" ] && docker inspect -f '{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}' "$id" |
        awk '{ printf "%.2f %d\n", $1 / 1e9, $2 }'
}

# Writes Docker's oom events for this project's containers to $1 ("time container" lines) until
# killed; sets DOCKER_OOM_WATCH to its pid.
docker_oom_watch() {
    docker events --filter type=container --filter event=oom \
        --filter "label=com.docker.compose.project=$DOCKER_PROJECT" \
        --format '{{.Time}} {{index .Actor.Attributes "com.docker.compose.service"}} {{index .Actor.Attributes "com.docker.compose.container-number"}}' >>"$1" &
    DOCKER_OOM_WATCH=$!
    DOCKER_OOM_EVENTS=$1
}

# OOM kills of service $1 since docker_oom_watch started.
cg_oom_kills() {
    local svc=$1 n=1
    [[ $svc =~ ^api([0-9]+)$ ]] && { svc=api; n=${BASH_REMATCH[1]}; }
    awk -v s="$svc" -v n="$n" '$2 == s && $3 == n { c++ } END { print c + 0 }' "${DOCKER_OOM_EVENTS:-/dev/null}" 2>/dev/null || echo 0
}
