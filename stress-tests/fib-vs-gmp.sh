#!/usr/bin/env bash
# fib(N) to decimal: Arena (`arena fib-bench`: num-bigint + tfhe-ntt, see src/fib/) against GMP
# (gmpy2) on this machine, back to back, best of ROUNDS each, REPEAT times over (the machine is
# shared: a pair measured in the same moment is what compares), each pair's ratio and the ratio
# of the bests. Builds `arena` as ARENA_BUILD says (release by default: the figure that matters).
#   stress-tests/fib-vs-gmp.sh [N]          default N = 1000000; ROUNDS=5 REPEAT=3
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
N=${1:-1000000}
ROUNDS=${ROUNDS:-5}
REPEAT=${REPEAT:-3}
python3 -c 'import gmpy2' 2>/dev/null || { log "installing gmpy2 (pip)"; pip install -q gmpy2; }
(cd "$ROOT" && cargo build "${BUILD_FLAGS[@]}" --quiet --bin arena)

gmp_version=$(python3 -c 'import gmpy2; print(gmpy2.mp_version())')
total() { sed -n 's/.*total \([0-9.]*\) ms.*/\1/p' <<<"$1"; }
best_a='' best_g=''
for ((i = 1; i <= REPEAT; i++)); do
    ours=$("$BIN" fib-bench "$N" --rounds "$ROUNDS")
    gmp=$(python3 - "$N" "$ROUNDS" <<'PY'
import sys, time, gmpy2
n, rounds = int(sys.argv[1]), int(sys.argv[2])
best = (float("inf"), 0, 0)
for _ in range(rounds):
    t = time.perf_counter()
    value = gmpy2.fib(n)
    c = time.perf_counter()
    digits = len(str(value))
    d = time.perf_counter()
    best = min(best, (d - t, c - t, d - c))
print(f"fib({n}): {digits} digits, compute {best[1] * 1e3:.2f} ms, to decimal {best[2] * 1e3:.2f} ms, total {best[0] * 1e3:.2f} ms")
PY
    )
    a=$(total "$ours") g=$(total "$gmp")
    echo "run $i/$REPEAT arena ($ARENA_BUILD, num-bigint + tfhe-ntt): $ours"
    echo "run $i/$REPEAT $gmp_version via gmpy2: $gmp"
    awk -v a="$a" -v g="$g" -v i="$i" -v r="$REPEAT" 'BEGIN { printf "run %d/%d ratio arena / GMP: %.2f\n", i, r, a / g }'
    best_a=$(awk -v a="$a" -v b="${best_a:-$a}" 'BEGIN { print (a < b ? a : b) }')
    best_g=$(awk -v g="$g" -v b="${best_g:-$g}" 'BEGIN { print (g < b ? g : b) }')
done
awk -v a="$best_a" -v g="$best_g" -v r="$REPEAT" \
    'BEGIN { printf "best of %d runs: arena %.2f ms, GMP %.2f ms, ratio arena / GMP: %.2f\n", r, a, g, a / g }'
