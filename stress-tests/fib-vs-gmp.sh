#!/usr/bin/env bash
# fib(N) to decimal: Arena (`arena fib-bench`, num-bigint) against GMP (gmpy2) on this machine,
# in the same run, best of ROUNDS each, and the ratio. Builds `arena` as ARENA_BUILD says
# (release by default: the figure that matters).
#   stress-tests/fib-vs-gmp.sh [N]          default N = 1000000
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
N=${1:-1000000}
ROUNDS=${ROUNDS:-5}
python3 -c 'import gmpy2' 2>/dev/null || { log "installing gmpy2 (pip)"; pip install -q gmpy2; }
(cd "$ROOT" && cargo build "${BUILD_FLAGS[@]}" --quiet --bin arena)

ours=$("$BIN" fib-bench "$N" --rounds "$ROUNDS")
gmp=$(python3 - "$N" "$ROUNDS" <<'PY'
import sys, time, gmpy2
n, rounds = int(sys.argv[1]), int(sys.argv[2])
best = float("inf")
for _ in range(rounds):
    t = time.perf_counter()
    digits = len(str(gmpy2.fib(n)))
    best = min(best, time.perf_counter() - t)
print(f"fib({n}): {digits} digits, total {best * 1e3:.2f} ms")
PY
)
echo "arena ($ARENA_BUILD, num-bigint): $ours"
echo "$(python3 -c 'import gmpy2; print(gmpy2.mp_version())') via gmpy2: $gmp"
a=$(sed -n 's/.*total \([0-9.]*\) ms.*/\1/p' <<<"$ours")
g=$(sed -n 's/.*total \([0-9.]*\) ms.*/\1/p' <<<"$gmp")
awk -v a="$a" -v g="$g" 'BEGIN { printf "ratio arena / GMP: %.2f\n", a / g }'
