# One measured run of a stress test, shared by the legs of stress-tests/run (the cgroup-emulated
# stack and the compose one): before it, the stack is healed if a part died; during it, every
# service's memory is sampled; after it, its OOM kills and CPU throttling, status and time are
# written beside its log. Sourced by stress-tests/run after scripts/lib.sh and limits.sh (or
# docker-cgroups.sh, whose readers take the same service names); it needs:
#   OUT        the leg's folder, where NAME.log, NAME.status, NAME.peak, … go (and the charts'
#              series: NAME.k6.csv.gz from k6, NAME.memory.tsv from the memory sampler)
#   SERVICES   the services to measure (api1 … rabbitmq)
#   HEAL       the command that restarts what died (scripts/up --limits, scripts/docker-up …)
#   ONLY       the runs asked for

# Every service alive and /ping answering; otherwise HEAL restarts what died, and the next run
# says so.
heal_if_needed() {
    local dead=() svc
    for svc in $SERVICES; do [ -n "$(service_pids "$svc")" ] || dead+=("$svc"); done
    curl -fsS -m 5 "http://127.0.0.1:$ARENA_PORT/ping" >/dev/null 2>&1 || dead+=("/ping")
    [ ${#dead[@]} -eq 0 ] && return 0
    log "not running before $1: ${dead[*]} — ${HEAL[*]}"
    echo "${dead[*]}" >"$OUT/$1.healed"
    "${HEAL[@]}" >>"$OUT/heal.log" 2>&1 || log "${HEAL[*]} could not heal the stack (see $OUT/heal.log)"
}

# Each service's memory every 2 s while a run goes: the cgroup's usage and the PSS of its
# processes (what they hold, shared pages split among them). Writes the peaks to $1 ("svc
# cgroup_bytes pss_kb") and appends every sample to $2 ("epoch svc cgroup_bytes pss_kb", the
# memory chart's series): one write per round, from the values the peaks are read from anyway.
sample_memory() {
    declare -A cg pss
    local svc c k pids series
    while :; do
        series=""
        for svc in $SERVICES; do
            c=$(cg_mem_current "$svc"); [ "${c:-0}" -gt "${cg[$svc]:-0}" ] && cg[$svc]=$c
            mapfile -t pids < <(cg_procs "$svc")
            k=$(pss_kb "${pids[@]}"); [ "${k:-0}" -gt "${pss[$svc]:-0}" ] && pss[$svc]=$k
            series+="$EPOCHSECONDS $svc ${c:-0} ${k:-0}"$'\n'
        done
        printf '%s' "$series" >>"$2"
        for svc in $SERVICES; do echo "$svc ${cg[$svc]:-0} ${pss[$svc]:-0}"; done >"$1.tmp" && mv "$1.tmp" "$1"
        sleep 2
    done
}
counters() {  # svc oom_kills throttled_seconds, for every service
    local svc; for svc in $SERVICES; do echo "$svc $(cg_oom_kills "$svc") $(cg_throttled_s "$svc")"; done
}

# A copy of a k6 script that also counts answers by status (thresholds on http_reqs{status:…}
# that always pass make k6 export those counts) and exports p(95)/p(99)/p(99.9) of every trend.
# Needs `here` (stress-tests/) and OUT (where the copy goes); side_by_side.py calls it too.
k6_wrap() {
    local src=$here/$1 out=$OUT/wrap-$1
    {
        echo "import * as s from '$src';"
        echo "export * from '$src';"
        grep -q '^export default' "$src" && echo "export default s.default;"
        cat <<'JS'
const thresholds = Object.assign({}, s.options.thresholds || {});
for (const st of [0, 200, 201, 204, 400, 401, 403, 404, 409, 413, 422, 429, 500, 502, 503, 504]) {
  thresholds[`http_reqs{status:${st}}`] = ['count>=0'];
}
const stats = [...new Set([...(s.options.summaryTrendStats || ['avg', 'min', 'med', 'max']), 'med', 'p(95)', 'p(99)', 'p(99.9)', 'max'])];
export const options = Object.assign({}, s.options, { thresholds, summaryTrendStats: stats });
JS
    } >"$out"
    echo "$out"
}

# run NAME TIMEOUT COMMAND…: one run, its output in $OUT/NAME.log, its figures beside it. A run
# during which a service was OOM-killed fails ($OUT/NAME.oom names them), whatever its checks
# said: the budget is part of what is tested.
run() {
    local name=$1 limit=$2 start status svc oom=(); shift 2
    [[ " $ONLY " == *" $name "* ]] || return 0
    heal_if_needed "$name"
    log "== $name: $*"
    for svc in $SERVICES; do cg_mem_peak_reset "$svc" || true; done
    counters >"$OUT/$name.before"
    sample_memory "$OUT/$name.sampled" "$OUT/$name.memory.tsv" &
    local sampler=$!
    start=$(date +%s)
    # k6 reads K6_OUT as if given --out: every sample, one CSV line each, gzipped because the
    # name ends in .gz (the charts' series; CHARTS=0 leaves it out). With k6's default system
    # tags on every line (URL, protocol, TLS version, …) people.js's p95 at the 600/s ramp rose
    # in 7 pairs of 8, up to threefold; with only the tags the charts and RESULTS.md read it
    # stayed within the noise of runs without the CSV (stress-tests/README.md, "Charts").
    local export=(K6_SUMMARY_EXPORT="$OUT/$name.summary.json")
    [ "${CHARTS:-1}" = 0 ] || export+=(K6_OUT="csv=$OUT/$name.k6.csv.gz" K6_SYSTEM_TAGS=status,name,scenario,expected_response,check)
    [[ $name == ping-* ]] && export=()   # two k6 runs each: their figures come from the log
    env "${export[@]}" timeout -k 30 "$limit" "$@" >"$OUT/$name.log" 2>&1
    status=$?
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
    # v1's peak was reset before the run; v2's is since the cgroup was made: the sampled one counts.
    for svc in $SERVICES; do echo "$svc $([ "$CG_VERSION" = 1 ] && cg_mem_peak "$svc" || echo 0)"; done >"$OUT/$name.peak"
    counters >"$OUT/$name.after"
    while read -r svc before _; do
        [ "$(awk -v s="$svc" '$1 == s { print $2 }' "$OUT/$name.after")" -gt "$before" ] && oom+=("$svc")
    done <"$OUT/$name.before"
    if [ ${#oom[@]} -gt 0 ]; then
        echo "${oom[*]}" >"$OUT/$name.oom"
        [ "$status" = 0 ] && status=137
    fi
    echo "$status $(( $(date +%s) - start ))" >"$OUT/$name.status"
    if [ "$status" = 0 ]; then log "   passed ($(( $(date +%s) - start )) s)"
    elif [ ${#oom[@]} -gt 0 ]; then log "   FAILED: OOM kills in ${oom[*]} — see $OUT/$name.log"
    else log "   FAILED (exit $status$([ "$status" = 124 ] && echo ': timed out')) — last lines of $OUT/$name.log:"; tail -15 "$OUT/$name.log" >&2; fi
    sleep 3   # let the inserter and the sockets' closes settle before the next run
}
